"""``peft-dor protocol``: the resumable grid (finished runs are skipped, interrupted ones resume) and the tables."""

from __future__ import annotations

import json

import pytest

from peft_dor.cli import protocol as protocol_module
from peft_dor.cli.errors import UsageError


@pytest.fixture
def protocol():
    return protocol_module


def _finish(run_dir, base_acc, new_acc, base_ece, new_ece, method="coop", dataset="dtd", seed=1):
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "base": {"accuracy": base_acc, "ece": base_ece},
        "new": {"accuracy": new_acc, "ece": new_ece},
    }
    (run_dir / "results.json").write_text(json.dumps(record))


def test_grid_skips_finished_runs_and_resumes_checkpoints(protocol, tmp_path, capsys):
    _finish(tmp_path / "coop" / "dtd" / "seed1", 0.8, 0.6, 0.02, 0.1)
    (tmp_path / "coop" / "dtd" / "seed2" / "checkpoint-40").mkdir(parents=True)
    (tmp_path / "coop" / "dtd" / "seed2" / "checkpoint-120").mkdir(parents=True)
    code = protocol.main(
        [
            "--methods",
            "coop",
            "--datasets",
            "dtd",
            "--seeds",
            "1",
            "2",
            "3",
            "--data_root",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path),
            "--dry_run",
            "--",
            "--bf16",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "3 runs in the grid, 1 finished, 2 to go." in out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and "seed 2" in lines[0] and "seed 3" in lines[1]
    assert "seed 2 (resumes from its last checkpoint)" in lines[0] and "resumes" not in lines[1]
    assert "-m peft_dor train" in lines[0] and "--config" in lines[0] and "coop.yaml" in lines[0]
    assert lines[0].endswith("--bf16")


def test_finished_grid_only_writes_the_tables(protocol, tmp_path, capsys):
    _finish(tmp_path / "coop" / "dtd" / "seed1", 0.8, 0.6, 0.02, 0.10)
    _finish(tmp_path / "coop" / "dtd" / "seed2", 0.7, 0.5, 0.04, 0.20, seed=2)
    _finish(tmp_path / "coop" / "eurosat" / "seed1", 0.9, 0.4, 0.01, 0.30, dataset="eurosat")
    code = protocol.main(
        [
            "--methods",
            "coop",
            "--datasets",
            "dtd",
            "eurosat",
            "--seeds",
            "1",
            "--data_root",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert "2 runs in the grid, 2 finished, 0 to go." in capsys.readouterr().out
    table = (tmp_path / "tables.md").read_text()
    # dtd: seeds 1 and 2 averaged (75 / 55); average row: HM(mean base 82.5, mean new 47.5) = 60.29
    assert "| coop (2 seeds) | 75.00 | 55.00 | 63.46 | 3.00 | 15.00 | 9.00 |" in table
    assert "| coop | 82.50 | 47.50 | 60.29 | 2.00 | 22.50 | 12.25 |" in table
    assert (tmp_path / "tables.csv").read_text().startswith("method,dataset,metric,base,new,hm,n_seeds")


def test_data_root_is_required_outside_the_demo(protocol, tmp_path):
    with pytest.raises(UsageError, match="--data_root is required"):
        protocol.main(["--methods", "coop", "--output_dir", str(tmp_path)])


def test_the_script_wrapper_runs_the_command(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    from .conftest import ROOT

    script = ROOT / "benchmarks" / "protocol.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--methods", "coop", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().startswith("peft-dor protocol: error: --data_root is required")
