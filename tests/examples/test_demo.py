"""The demo end to end in fresh processes: ``python examples/train.py --demo`` (one process), and two processes under
``accelerate launch -m peft_dor train`` (CPU, gloo).

Both runs use the same global batch (``--global_batch_size`` splits it over the processes), so DDP must reproduce the
single-process run: the same trained prompts and the same metrics, within float tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from .conftest import DEMO_ARGS, script_env


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_demo_writes_results_diagrams_adapter_and_card(demo_run):
    out, proc = demo_run
    results = _results(out)
    for side in ("base", "new", "hm"):
        for metric in ("accuracy", "ece"):
            assert 0.0 <= results[side][metric] <= 1.0
    assert results["base"]["n_samples"] == 40 and results["new"]["n_samples"] == 40  # 5 classes x 8 test images
    assert results["hm"]["ece"] == pytest.approx((results["base"]["ece"] + results["new"]["ece"]) / 2)
    assert results["method"] == "coop" and results["dor"]["weight"] == 8.0 and results["world_size"] == 1
    assert set(results["class_names"]["base"]).isdisjoint(results["class_names"]["new"])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["reliability_base.png", "reliability_new.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    assert "library_name: peft" in (out / "README.md").read_text()
    assert "accuracy" in proc.stdout and "HM" in proc.stdout  # the short table


def test_demo_adapter_loads_back_as_a_classifier(demo_run, demo_cache):
    import torch
    from peft import PeftModel
    from transformers import CLIPModel

    import peft_dor  # noqa: F401

    out, _ = demo_run
    results = _results(out)
    clip = CLIPModel.from_pretrained(results["model_name_or_path"])
    model = PeftModel.from_pretrained(clip, str(out)).eval()
    assert model.base_model.model.class_names == results["class_names"]["base"]
    with torch.no_grad():
        assert model(pixel_values=torch.zeros(2, 3, 32, 32)).logits.shape == (2, 5)


@pytest.mark.slow
def test_two_processes_match_one_process(demo_run, demo_cache, tmp_path):
    one, _ = demo_run
    two = tmp_path / "two-processes"
    cmd = [
        # the launcher through this interpreter: no dependence on a console script being on PATH
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",  # `accelerate launch -m peft_dor train`: the package's own entry point under the launcher
        "peft_dor",
        "train",
        *DEMO_ARGS,
        "--output_dir",
        str(two),
        "--use_cpu",
        "true",
    ]
    proc = subprocess.run(cmd, env=script_env(demo_cache), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = _results(one), _results(two)
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["global_batch_size"] == b["global_batch_size"] == 16
    for side in ("base", "new", "hm"):
        for metric in ("accuracy", "ece", "nll", "brier"):
            assert b[side][metric] == pytest.approx(a[side][metric], abs=1e-5), (side, metric)
    # the trained prompts themselves agree
    wa, wb = load_file(one / "adapter_model.safetensors"), load_file(two / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max() < 1e-5, key
    assert b["train"]["train_loss"] == pytest.approx(a["train"]["train_loss"], rel=1e-5)


def test_a_second_run_of_a_finished_demo_does_not_retrain(demo_run, demo_cache, monkeypatch):
    from peft_dor.cli.train import main

    monkeypatch.setenv("PEFT_DOR_CACHE", str(demo_cache))
    out, _ = demo_run
    before = (out / "results.json").read_text()
    assert main([*DEMO_ARGS, "--output_dir", str(out)])["base"] == _results(out)["base"]
    assert (out / "results.json").read_text() == before


def test_the_demo_output_is_clean(demo_run):
    _, proc = demo_run
    text = proc.stdout + proc.stderr
    for noise in ("Downloading data", "Warning", "warn(", "Relabelling", "Loading weights"):
        assert noise not in text, noise
    assert "Training" in text and "Evaluating base classes" in text and "Evaluating new classes" in text
    assert "DOR: 5 outliers per draw from a near pool of 12" in text  # the library's INFO lines are shown
