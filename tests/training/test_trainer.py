"""DORTrainer end to end on the tiny CLIP and a generated image set: loss, logs, metrics, resume, precision."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import CLIPModel

import peft_dor
from peft_dor import DORConfig, DORTrainer
from peft_dor.training import LossTerms, protocol_learning_rates

from ._toy_data import CLASS_NAMES, TOY_VOCABULARY


class RecordingTrainer(DORTrainer):
    """Remembers every outlier draw as (global step, micro-batch, names)."""

    def next_draw(self):
        draw = super().next_draw()
        self.draws = getattr(self, "draws", [])
        self.draws.append((self.state.global_step, self._draw_position[1], tuple(draw.names)))
        return draw


def _ctx(trainer) -> torch.Tensor:
    return trainer.prompt_model().clip.text_model.embeddings.coop_ctx["default"].detach().clone()


def _pool_drift(trainer) -> float:
    """Text drift on the whole outlier pool: 1 - mean cos(prompted, zero-shot)."""
    wrapper, pool = trainer.prompt_model(), trainer.dor.pool
    with torch.no_grad():
        return float(1 - (wrapper.encode_text(pool.names) * pool.features).sum(-1).mean())


def _train_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def _train_and_watch(make_trainer, weight):
    """Train CoOp (+DOR with ``weight``) for 15 steps; return the trainer, CE before/after, the pool drift, every
    forward's keyword arguments and the rows the text tower saw with prompts suspended (zero-shot) during training."""
    dor = DORConfig(weight=weight, vocabulary=TOY_VOCABULARY, pool_size=40)
    trainer = make_trainer(dor=dor, max_steps=15, logging_steps=5, trainer_kwargs={"optimizer_name": "sgd"})
    ce_before = trainer.evaluate()["eval_loss"]
    trainer.prepare_dor()
    wrapper = trainer.prompt_model()
    zero_shot_rows, forwards = [], []

    def count_text_pass(module, args):
        if any(layer.suspended for layer in wrapper.prompt_layers()):
            zero_shot_rows.append(args[0].shape[0])

    wrapper.clip.text_model.final_layer_norm.register_forward_pre_hook(count_text_pass)
    wrapper.register_forward_pre_hook(lambda module, args, kwargs: forwards.append(kwargs), with_kwargs=True)
    trainer.train()
    ce_after = trainer.evaluate()["eval_loss"]
    return trainer, ce_before, ce_after, _pool_drift(trainer), forwards, zero_shot_rows


@pytest.mark.slow
def test_coop_dor_end_to_end_lowers_ce_and_keeps_outliers_in_place(make_trainer):
    trainer, ce_before, ce_after, drift_dor, forwards, zero_shot_rows = _train_and_watch(make_trainer, None)
    assert trainer.dor.weight == 8.0  # weight=None: CoOp's default
    assert ce_after < ce_before - 0.05
    # one model forward per step, carrying the outliers; the text tower never encodes zero-shot prompts while training
    training_forwards = [kwargs for kwargs in forwards if "extra_names" in kwargs]
    assert len(training_forwards) == 15
    assert all(len(kwargs["extra_names"]) == len(CLASS_NAMES) for kwargs in training_forwards)
    assert zero_shot_rows == []
    assert {"loss", "loss_ce", "loss_dor"} <= set(_train_logs(trainer)[0])
    # the same run without the regulariser drifts far more on the outliers
    drift_plain = _train_and_watch(make_trainer, 0.0)[3]
    assert drift_dor < 0.25 * drift_plain


def test_logged_components_add_up_under_gradient_accumulation(make_trainer):
    trainer = make_trainer(
        dor=DORConfig(weight=2.0, vocabulary=TOY_VOCABULARY, pool_size=40),
        trainer_cls=RecordingTrainer,
        max_steps=4,
        per_device_train_batch_size=5,
        gradient_accumulation_steps=2,
        logging_steps=2,
    )
    trainer.train()
    logs = _train_logs(trainer)
    assert len(logs) == 2
    for entry in logs:
        # every logged value is an interval mean, so the identity of the loss holds for the logged means too
        assert entry["loss"] == pytest.approx(entry["loss_ce"] + 2.0 * entry["loss_dor"], rel=1e-4)
        assert entry["loss_dor"] > 0
    # two micro-batches per optimiser step, each with its own draw
    assert [(step, micro) for step, micro, _ in trainer.draws] == [(s, m) for s in range(4) for m in range(2)]
    assert len({names for _, _, names in trainer.draws}) == 8


def test_method_losses_are_added_and_logged(make_trainer, tiny_clip_path):
    model = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), peft_dor.KgCoOpConfig(class_names=CLASS_NAMES))
    trainer = make_trainer(model=model, max_steps=3)
    trainer.train()
    assert trainer.dor.weight == 2.0  # KgCoOp's default λ
    for entry in _train_logs(trainer):
        assert entry["loss"] == pytest.approx(entry["loss_ce"] + entry["loss_kg"] + 2.0 * entry["loss_dor"], rel=1e-4)
    assert _train_logs(trainer)[-1]["loss_kg"] > 0


def test_draws_are_a_function_of_seed_and_step(make_trainer):
    first = make_trainer(trainer_cls=RecordingTrainer, max_steps=3)
    first.train()
    second = make_trainer(trainer_cls=RecordingTrainer, max_steps=3)
    second.train()
    assert first.draws == second.draws
    assert len({names for _, _, names in first.draws}) == 3
    # the run seed is the sampler's seed (DORConfig.seed=None)
    other = make_trainer(seed=5)
    other.prepare_dor()
    assert first.dor.seed == 0 and other.dor.seed == 5


def test_resume_from_checkpoint_is_bitwise_identical(make_trainer, tmp_path):
    settings = {
        "trainer_cls": RecordingTrainer,
        "max_steps": 6,
        "save_strategy": "steps",
        "save_steps": 3,
        "trainer_kwargs": {"optimizer_name": "sgd", "scheduler_name": "protocol"},
    }
    full = make_trainer(output_dir=tmp_path / "full", **settings)
    full.train()
    resumed = make_trainer(output_dir=tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert torch.equal(_ctx(full), _ctx(resumed))
    assert resumed.draws == full.draws[3:]
    # the resumed history (steps 1-3 from the checkpoint, 4-6 new) equals the uninterrupted one
    keys = ("step", "loss", "loss_ce", "loss_dor", "learning_rate")
    assert [[e[k] for k in keys] for e in _train_logs(resumed)] == [[e[k] for k in keys] for e in _train_logs(full)]


def test_protocol_optimizer_and_schedule_by_name(make_trainer):
    # 30 images / batch 10 = 3 steps per epoch, 3 epochs
    trainer = make_trainer(
        dor=None,
        max_steps=-1,
        num_train_epochs=3,
        learning_rate=0.002,
        trainer_kwargs={"optimizer_name": "sgd", "scheduler_name": "protocol"},
    )
    trainer.train()
    group = trainer.optimizer.param_groups[0]
    assert isinstance(trainer.optimizer.optimizer, torch.optim.SGD)
    assert (group["momentum"], group["weight_decay"]) == (0.9, 5e-4)
    rates = [entry["learning_rate"] for entry in _train_logs(trainer)]
    expected = [lr for lr in protocol_learning_rates(0.002, 3) for _ in range(3)]
    assert rates == pytest.approx(expected, rel=1e-9)


def test_evaluation_reports_calibration_and_loads_the_best_model_on_ece(make_trainer, tmp_path):
    trainer = make_trainer(
        max_steps=4,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="ece",
        greater_is_better=False,
        output_dir=tmp_path / "best",
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_ece" in entry]
    assert len(evals) == 2
    assert {"eval_accuracy", "eval_ece", "eval_mce", "eval_ace", "eval_nll", "eval_brier"} <= set(evals[0])
    best = min(evals, key=lambda entry: entry["eval_ece"])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    saved = load_file(f"{trainer.state.best_model_checkpoint}/adapter_model.safetensors")
    (ctx_key,) = [key for key in saved if "coop_ctx" in key]
    assert torch.equal(saved[ctx_key], _ctx(trainer))
    # evaluation never draws outliers
    assert trainer.evaluate()["eval_loss"] > 0
    assert trainer._draw_position[0] == 3


def test_predict_without_labels_returns_logits_only(make_trainer, toy_dataset):
    trainer = make_trainer()
    output = trainer.predict(toy_dataset.remove_columns("label"))
    assert output.predictions.shape == (len(toy_dataset), len(CLASS_NAMES))
    labelled = trainer.predict(toy_dataset)
    assert labelled.predictions.shape == (len(toy_dataset), len(CLASS_NAMES))
    assert "test_ece" in labelled.metrics


def test_plain_method_without_dor_and_default_arguments(make_trainer):
    trainer = make_trainer(dor=None, max_steps=2)
    assert trainer.label_names == ["labels"]
    assert trainer.args.ddp_find_unused_parameters is False
    assert trainer.loss_is_scaled_for_ga is False and trainer.model_accepts_loss_kwargs is False
    forwards = []
    trainer.prompt_model().register_forward_pre_hook(lambda m, a, k: forwards.append(k), with_kwargs=True)
    trainer.train()
    assert not any("extra_names" in k for k in forwards)
    logs = _train_logs(trainer)
    assert "loss_dor" not in logs[0] and logs[0]["loss"] == pytest.approx(logs[0]["loss_ce"])
    no_metrics = make_trainer(dor=None, trainer_kwargs={"compute_metrics": None}, ddp_find_unused_parameters=True)
    assert no_metrics.compute_metrics is None and no_metrics.args.ddp_find_unused_parameters is True


def test_warns_when_trainer_would_drop_the_image_column(make_trainer, caplog):
    with caplog.at_level(logging.WARNING, logger="peft_dor.training.trainer"):
        make_trainer(dor=None, remove_unused_columns=True)
    assert "remove_unused_columns=False" in caplog.text


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_keeps_the_adapter_in_float32(make_trainer, precision):
    # bf16 autocasts on CPU; fp16 is accepted on CPU but runs in float32 (it autocasts on GPUs only)
    trainer = make_trainer(max_steps=3, **{precision: True})
    before = _ctx(trainer)
    trainer.train()
    after = _ctx(trainer)
    assert after.dtype == torch.float32 and not torch.equal(before, after)
    assert all(math.isfinite(entry["loss_dor"]) for entry in _train_logs(trainer))


def test_loss_terms_total_and_logs():
    terms = LossTerms(
        outputs=None,
        ce=torch.tensor(1.0),
        method={"kg": torch.tensor(0.5)},
        dor=torch.tensor(0.25),
        dor_weight=4.0,
    )
    assert float(terms.total()) == pytest.approx(2.5)
    assert float(terms.total(exclude=("kg",))) == pytest.approx(2.0)
    assert sorted(terms.logs()) == ["loss_ce", "loss_dor", "loss_kg"]
    assert float(terms.logs()["loss_dor"]) == pytest.approx(0.25)  # logged unweighted
    with pytest.raises(ValueError, match="labels"):
        LossTerms(outputs=None, ce=None).total()
