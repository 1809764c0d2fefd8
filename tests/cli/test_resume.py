"""Never lose work: Ctrl-C saves and resumes bit for bit, reruns resume or stop, the adapter outlives a failed
evaluation, and checkpoints of another configuration are refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from .conftest import command_env, train_args

# 6 base-class training images, one per step: 6 steps per epoch, 12 in all
RESUMABLE = ("--shots", "2", "--global_batch_size", "1", "--num_train_epochs", "2", "--logging_steps", "1")


def _command(image_folder, model, out):
    args = train_args(image_folder, model, out, *RESUMABLE)
    return [sys.executable, "-m", "peft_dor", *args]


def _interrupt_after(cmd, env, n_logs: int):
    """Start ``cmd``, send SIGINT once it logged ``n_logs`` training steps; return the finished process."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stdout:
        if "'loss'" in line:
            seen += 1
            if seen == n_logs:
                proc.send_signal(signal.SIGINT)
                break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _results(out):
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_sigint_checkpoints_and_the_rerun_finishes_bitwise_like_an_uninterrupted_run(
    image_folder, tiny_clip_path, tmp_path, run_cli
):
    env = command_env(tmp_path / "cache")
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"

    code, _, err = _interrupt_after(_command(image_folder, tiny_clip_path, interrupted), env, n_logs=2)
    assert code == 128 + signal.SIGINT, err[-2000:]
    assert "Resume with the same command: peft-dor train" in err
    checkpoints = sorted(p.name for p in interrupted.glob("checkpoint-*"))
    assert len(checkpoints) == 1, checkpoints
    step = int(checkpoints[0].split("-")[1])
    assert 2 <= step < 6  # mid-epoch: the epoch has 6 steps
    assert not (interrupted / "results.json").exists()

    resumed = subprocess.run(
        _command(image_folder, tiny_clip_path, interrupted), env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {interrupted / checkpoints[0]} (step {step})" in resumed.stdout

    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, straight, *RESUMABLE))  # the reference
    assert code == 0, err
    a, b = load_file(interrupted / "adapter_model.safetensors"), load_file(straight / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert bool((a[key] == b[key]).all()), key  # bitwise
    ra, rb = _results(interrupted), _results(straight)
    for side in ("base", "new", "hm"):
        assert ra[side] == rb[side], side
    state = json.loads((interrupted / "trainer_state.json").read_text())
    assert state["global_step"] == 12


def test_a_finished_run_is_not_retrained(run_cli, image_folder, tiny_clip_path, tmp_path):
    out = tmp_path / "out"
    args = train_args(image_folder, tiny_clip_path, out)
    code, _, err = run_cli(*args)
    assert code == 0, err
    before = (out / "results.json").read_text()
    # 6 images, batch 4, the last batch dropped: one step
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    for name in ("train_results.json", "eval_results.json", "all_results.json", "trainer_state.json"):
        assert (out / name).exists(), name
    record = _results(out)
    assert record["seed"] == 1 and record["settings"]["method"]["n_ctx"] == 2
    assert record["vocabulary"]["size"] == 6 and len(record["vocabulary"]["sha256"]) == 64
    assert set(record["versions"]) >= {"torch", "transformers", "peft", "peft_dor"}

    code, stdout, _ = run_cli(*args)
    assert code == 0 and "nothing to train" in stdout
    assert (out / "results.json").read_text() == before

    code, _, err = run_cli(*args, "--learning_rate", "0.5")
    assert code == 2 and "learning_rate: 0.002 -> 0.5" in err and "--overwrite_output_dir" in err


def test_checkpoints_of_another_configuration_are_refused(
    run_cli, image_folder, tiny_clip_path, tmp_path, monkeypatch
):
    import peft_dor.cli.train as train

    out = tmp_path / "out"
    # the evaluation fails, so the folder holds a trained adapter and its checkpoint but no results
    monkeypatch.setattr(train, "evaluate_run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, out))
    assert code == 1
    assert "The trained adapter is saved in" in err and f"peft-dor evaluate --adapter {out}" in err
    assert (out / "adapter_model.safetensors").exists() and not (out / "results.json").exists()

    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, out, "--n_ctx", "3"))
    assert code == 2 and "n_ctx: 2 -> 3" in err

    (out / "train_results.json").unlink()  # as if training had been interrupted: only the checkpoint is left
    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, out, "--seed", "2"))
    assert code == 2 and "checkpoint-1" in err and "seed: 1 -> 2" in err

    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, out, "--resume_from_checkpoint", out / "nope"))
    assert code == 2 and "no such checkpoint folder" in err


def test_a_failed_evaluation_keeps_the_adapter_and_the_rerun_only_evaluates(
    run_cli, image_folder, tiny_clip_path, tmp_path, monkeypatch
):
    import peft_dor.cli.train as train

    out = tmp_path / "out"
    real = train.evaluate_run

    def failing(*args, **kwargs):
        raise RuntimeError("out of memory in the test split")

    monkeypatch.setattr(train, "evaluate_run", failing)
    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, out))
    assert code == 1 and "out of memory in the test split" in err
    trained = load_file(out / "adapter_model.safetensors")

    monkeypatch.setattr(train, "evaluate_run", real)
    code, stdout, err = run_cli(*train_args(image_folder, tiny_clip_path, out))
    assert code == 0, err
    assert "holds the trained adapter of this run; evaluating it" in stdout
    assert "Training" not in stdout
    after = load_file(out / "adapter_model.safetensors")
    assert all(bool((trained[k] == after[k]).all()) for k in trained)
    assert 0.0 <= _results(out)["hm"]["accuracy"] <= 1.0
