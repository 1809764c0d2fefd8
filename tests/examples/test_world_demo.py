"""The README's main-job command, ``python examples/train.py --demo``, in a fresh process: the paper in miniature on
the shipped world CLIP (shortened with the two flags the demo takes for that; the full run's effect is checked by
``tests/world``)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import TRAIN, script_env


def test_the_readme_demo_command_runs_the_world_experiment(tmp_path):
    out = tmp_path / "demo_output"
    cmd = [sys.executable, str(TRAIN), "--demo", "--output_dir", str(out), "--num_train_epochs", "2", "--shots", "2"]
    proc = subprocess.run(cmd, env=script_env(tmp_path / "cache"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for method in ("zero_shot", "coop", "coop+dor"):
        for split in ("base", "new", "hm"):
            for metric in ("accuracy", "ece"):
                assert 0.0 <= results["summary"][method][split][metric] <= 1.0, (method, split, metric)
    assert results["config"]["epochs"] == 2 and results["config"]["shots"] == 2  # the flags reached the experiment
    assert len(results["runs"]) == 9  # one entry per seed and method (zero-shot included)
    assert sorted(p.name for p in out.glob("*.png")) == ["drift.png", "reliability_new.png"]
    assert "zero_shot" in proc.stdout and "coop+dor" in proc.stdout and "ECE new" in proc.stdout  # the table
    assert "train_runtime" not in proc.stdout  # Trainer's log dicts stay out of the demo's output
