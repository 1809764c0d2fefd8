"""Faults: a run killed mid-epoch resumes to the uninterrupted result bit for bit; a NaN/inf loss stops training with
the step and the loss component; saving is write-then-rename, so a crash never leaves a half-written adapter that loads.

Crashes are injected for real: an exception raised from a callback mid-epoch, a safetensors writer that fails after
writing part of the file, a ``trainer_state.json`` cut short, a rename that fails mid-commit.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import peft.peft_model
import pytest
import torch
from peft import PeftModel
from safetensors import SafetensorError
from safetensors.torch import save_file
from transformers import CLIPModel, TrainerCallback, TrainingArguments
from transformers.trainer_callback import TrainerControl, TrainerState

from peft_dor import GPACallback
from peft_dor.training import accuracy_compute_metrics
from peft_dor.training.saving import save_pretrained_atomically

from ._cases import build_model, dor_config, image_rows, trainable_state, trainer_class, training_args

WEIGHTS = "adapter_model.safetensors"
TRAIN_ROWS, EVAL_ROWS = image_rows(9, seed=1), image_rows(10, seed=2)


class SimulatedCrash(Exception):
    """What a killed process looks like from inside: training stops at an arbitrary point."""


class CrashAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedCrash(f"killed after step {self.step}")


def _trainer(key: str, tiny_clip_path: str, output_dir, callbacks=(), **overrides):
    """9 images in batches of 3: 3 steps per epoch, 6 steps; checkpoints every 2 steps, i.e. mid-epoch."""
    settings = {
        "max_steps": 6,
        "per_device_train_batch_size": 3,
        "per_device_eval_batch_size": 10,
        "save_strategy": "steps",
        "save_steps": 2,
    }
    return trainer_class(key)(
        model=build_model(key, tiny_clip_path, seed=0),
        args=training_args(str(output_dir), **{**settings, **overrides}),
        train_dataset=TRAIN_ROWS,
        eval_dataset=EVAL_ROWS,
        compute_metrics=accuracy_compute_metrics,
        dor=dor_config(key, cache_dir=str(output_dir / "dor-cache")),
        optimizer_name="sgd",
        scheduler_name="protocol",
        scheduler_kwargs={"warmup_epochs": 0},
        callbacks=list(callbacks),
    )


def _outcome(trainer) -> tuple[dict, list, dict]:
    keys = ("step", "loss", "loss_ce", "loss_dor", "learning_rate")
    logs = [[entry.get(k) for k in keys] for entry in trainer.state.log_history if "loss" in entry]
    metrics = {k: v for k, v in trainer.evaluate().items() if "runtime" not in k and "per_second" not in k}
    return trainable_state(trainer.model), logs, metrics


@pytest.fixture(scope="module")
def uninterrupted(tiny_clip_path, tmp_path_factory):
    """The uninterrupted run of each method, computed once."""
    runs = {}

    def get(key: str):
        if key not in runs:
            trainer = _trainer(key, tiny_clip_path, tmp_path_factory.mktemp(f"full-{key}"))
            trainer.train()
            runs[key] = _outcome(trainer)
        return runs[key]

    return get


def _assert_same_run(resumed, full) -> None:
    adapter, logs, metrics = resumed
    assert adapter.keys() == full[0].keys()
    assert all(torch.equal(adapter[name], full[0][name]) for name in adapter)
    assert logs == full[1] and len(logs) == 6
    assert metrics == full[2]


# CoOp resumes mid-epoch in the next test; here methods with their own loss (KgCoOp, TCP, whose knowledge of
# outlier names is computed lazily) and a vision method with image-side DOR
@pytest.mark.slow
@pytest.mark.parametrize("key", ["kgcoop", "tcp", "vpt"])
def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(key, tiny_clip_path, tmp_path, uninterrupted):
    crashed = _trainer(key, tiny_clip_path, tmp_path, callbacks=[CrashAt(4)])  # in the middle of epoch 2
    with pytest.raises(SimulatedCrash):
        crashed.train()
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("checkpoint")) == ["checkpoint-2"]
    resumed = _trainer(key, tiny_clip_path, tmp_path)
    resumed.train(resume_from_checkpoint=True)  # the last checkpoint: step 2, in the middle of epoch 1
    _assert_same_run(_outcome(resumed), uninterrupted(key))


@pytest.mark.slow
def test_crash_while_writing_a_checkpoint_resumes_from_the_previous_one(
    tiny_clip_path, tmp_path, uninterrupted, monkeypatch, caplog
):
    real_save = TrainerState.save_to_json

    def cut_short(self, path):
        if self.global_step == 4:  # trainer_state.json is written last: the checkpoint is otherwise complete
            with open(path, "w") as handle:
                handle.write('{"global_step": 4, "log_hist')
            raise SimulatedCrash("killed while writing trainer_state.json")
        real_save(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", cut_short)
    with pytest.raises(SimulatedCrash):
        _trainer("coop", tiny_clip_path, tmp_path).train()
    monkeypatch.setattr(TrainerState, "save_to_json", real_save)
    assert (tmp_path / "checkpoint-4" / WEIGHTS).is_file()

    with pytest.raises(ValueError, match=r"checkpoint-4.*incomplete.*unreadable trainer_state.json"):
        _trainer("coop", tiny_clip_path, tmp_path).train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    resumed = _trainer("coop", tiny_clip_path, tmp_path)
    with caplog.at_level(logging.WARNING, logger="peft_dor.training.trainer"):
        resumed.train(resume_from_checkpoint=True)
    assert "Skipping the incomplete checkpoint" in caplog.text and "checkpoint-4" in caplog.text
    _assert_same_run(_outcome(resumed), uninterrupted("coop"))


@pytest.mark.parametrize("key", ["coop", "prograd"])
def test_nan_loss_from_diverging_prompts_stops_at_its_step(tiny_clip_path, tmp_path, key):
    trainer = _trainer(key, tiny_clip_path, tmp_path, learning_rate=1e38, max_grad_norm=0.0, save_strategy="no")
    with pytest.raises(
        FloatingPointError, match=r"at step 2 \(epoch 0\.33\): the loss is not finite in ce=nan"
    ) as error:
        trainer.train()
    assert trainer.state.global_step == 1
    if key == "prograd":  # the distillation term that guides ProGrad's projection is named too
        assert "prograd_kl=nan" in str(error.value)


def test_nan_outlier_image_names_the_dor_component_and_updates_nothing(tiny_clip_path, tmp_path):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images[1, 0, 4, 4] = float("nan")  # one corrupt pixel in one outlier image
    model = build_model("vpt", tiny_clip_path)
    before = trainable_state(model)
    trainer = trainer_class("vpt")(
        model=model,
        args=training_args(str(tmp_path), max_steps=4, per_device_train_batch_size=3),
        train_dataset=TRAIN_ROWS,
        compute_metrics=None,
        dor=dor_config("vpt", outlier_images=images, num_outliers=3),
    )
    with pytest.raises(FloatingPointError) as error:
        trainer.train()
    message = str(error.value)
    assert "at step 1 " in message and "not finite in dor=nan;" in message
    assert "ce=nan" not in message  # the classification loss itself was fine
    assert all(torch.equal(value, before[name]) for name, value in trainable_state(model).items())


def _partial_writer(fraction: float = 0.5):
    """A safetensors writer that dies after writing ``fraction`` of the real file (a crash or a full disk)."""

    def write(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata=metadata)
        path = Path(filename)
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
        raise OSError(28, "No space left on device")

    return write


def test_failed_save_keeps_the_previous_adapter_intact(tiny_clip_path, tmp_path, monkeypatch):
    model = build_model("maple", tiny_clip_path, seed=0)
    folder = tmp_path / "adapter"
    save_pretrained_atomically(model, folder)
    saved = trainable_state(model)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(1.0)
    monkeypatch.setattr(peft.peft_model, "safe_save_file", _partial_writer())
    with pytest.raises(OSError, match="No space left"):
        save_pretrained_atomically(model, folder)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["adapter"]  # no staging folder left behind
    loaded = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder, is_trainable=True)
    assert all(torch.equal(value, saved[name]) for name, value in trainable_state(loaded).items())
    # without staging, the same fault destroys the previous adapter and leaves a truncated file
    monkeypatch.setattr(peft.peft_model, "safe_save_file", _partial_writer())
    with pytest.raises(OSError):
        model.save_pretrained(folder)
    monkeypatch.undo()
    with pytest.raises(SafetensorError):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder)


def test_crash_mid_commit_leaves_no_weights_that_could_load_with_the_wrong_config(
    tiny_clip_path, tmp_path, monkeypatch
):
    folder = tmp_path / "adapter"
    save_pretrained_atomically(build_model("coop", tiny_clip_path, seed=0), folder)
    other = build_model("coop", tiny_clip_path, seed=1, ctx_init="a photo of a", n_ctx=None)
    real_replace = os.replace

    def replace(source, destination):
        if str(destination).endswith(WEIGHTS):
            raise SimulatedCrash("killed between the config and the weights")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SimulatedCrash):
        save_pretrained_atomically(other, folder)
    monkeypatch.undo()
    # the new config is in, the old weights are gone: loading fails loudly instead of mixing the two
    assert sorted(os.listdir(folder)) == ["README.md", "adapter_config.json"]
    with pytest.raises(ValueError):  # PEFT, finding no weights file, goes looking for a Hub repository of that name
        PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), str(folder))


def test_trainer_checkpoint_write_failure_leaves_no_partial_adapter(tiny_clip_path, tmp_path, monkeypatch):
    trainer = _trainer("coop", tiny_clip_path, tmp_path, max_steps=2)
    monkeypatch.setattr(peft.peft_model, "safe_save_file", _partial_writer())
    with pytest.raises(OSError, match="No space left"):
        trainer.train()
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint-2" / WEIGHTS).exists()
    assert not [name for name in os.listdir(tmp_path) if "staging" in name]
    with pytest.raises(ValueError, match="no complete checkpoint"):
        _trainer("coop", tiny_clip_path, tmp_path).train(resume_from_checkpoint=True)


def test_gpa_refuses_to_resume_without_its_running_sum(tmp_path):
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to=[])
    callback = GPACallback(mean=2, std=1)
    callback.resume_checkpoint = str(tmp_path / "checkpoint-8")
    state = TrainerState(global_step=8, epoch=2.0, num_train_epochs=4)
    with pytest.raises(ValueError, match=r"after epoch 2 needs the running sum gpa_state.safetensors"):
        callback.on_train_begin(args, state, TrainerControl(), model=torch.nn.Linear(2, 2))
    # the sum is read from the checkpoint resumed from, wherever it is (DORTrainer tells the callback)
    os.makedirs(callback.resume_checkpoint)
    save_file({"weight": torch.full((2, 2), 3.0)}, os.path.join(callback.resume_checkpoint, "gpa_state.safetensors"))
    model = torch.nn.Linear(2, 2, bias=False)
    callback.on_train_begin(
        TrainingArguments(str(tmp_path / "elsewhere"), use_cpu=True, report_to=[]),
        state,
        TrainerControl(),
        model=model,
    )
    assert torch.equal(callback.aggregate["weight"], torch.full((2, 2), 3.0))
    # before the first epoch ends there is nothing to resume: starting from zero is right
    callback.resume_checkpoint = str(tmp_path / "checkpoint-2")
    callback.on_train_begin(args, TrainerState(global_step=2, epoch=0.5, num_train_epochs=4), TrainerControl())
    assert callback.aggregate == {}
