"""DORTrainer: ``transformers.Trainer`` for peft-dor prompt methods, with Dynamic Outlier Regularization.

Each training step makes exactly one forward through the (possibly DDP-wrapped) model. That forward returns the
class logits with the cross-entropy, the method's own weighted losses and, when DOR is on, the prompted features of the
drawn outliers; the loss is ``CE + sum(method losses) + weight * L_dor``. Under DDP a second call through a submodule
would break gradient synchronisation, which is why everything comes out of the one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from ..dor.outliers import unwrap_prompt_model
from ..dor.regularizer import DORConfig, DORRegularizer, OutlierDraw
from .schedule import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

_DEFAULT = object()  # "compute_metrics not given": accuracy + calibration (explicit None turns metrics off)
# Output fields that are not predictions: dropped when Trainer predicts without labels.
_NON_PREDICTION_KEYS = ["image_embeds", "text_embeds", "losses", "extra_text_embeds", "extra_image_embeds"]


def accuracy_compute_metrics(eval_pred) -> dict[str, float]:
    """Top-1 accuracy from an ``EvalPrediction`` (the fallback when ``peft_dor.metrics`` is unavailable)."""
    predictions = eval_pred.predictions
    predictions = predictions[0] if isinstance(predictions, tuple) else predictions
    return {"accuracy": float((np.argmax(predictions, axis=-1) == eval_pred.label_ids).mean())}


def default_compute_metrics() -> Callable[..., dict[str, float]]:
    """``peft_dor.metrics.calibration_compute_metrics()`` (accuracy, ECE, MCE, ACE, NLL, Brier), else accuracy."""
    try:
        from ..metrics import calibration_compute_metrics
    except ImportError:  # pragma: no cover - the metrics package ships with peft-dor
        return accuracy_compute_metrics
    return calibration_compute_metrics()


@dataclass
class LossTerms:
    """The named parts of one forward's training objective.

    Attributes:
        outputs: the model output (``PromptClassifierOutput``).
        ce: cross-entropy of the class logits (``output.loss``).
        method: the method's own losses, already weighted (``output.losses``, e.g. ``{"kg": ...}``).
        dor: the unweighted DOR loss ``1 - mean cos`` (``None`` without DOR or outside training).
        dor_weight: λ.
        draw: the outliers of this forward.
    """

    outputs: Any
    ce: torch.Tensor | None
    method: dict[str, torch.Tensor] = field(default_factory=dict)
    dor: torch.Tensor | None = None
    dor_weight: float = 0.0
    draw: OutlierDraw | None = None

    def total(self, exclude: tuple[str, ...] = ()) -> torch.Tensor:
        """``ce + sum(method losses not in exclude) + dor_weight * dor``."""
        if self.ce is None:
            raise ValueError(
                "The batch has no `labels`, so there is no cross-entropy to train on. Make the collator return "
                "'labels' and set TrainingArguments(label_names=['labels'])."
            )
        loss = self.ce
        for name, value in self.method.items():
            if name not in exclude:
                loss = loss + value
        if self.dor is not None:
            loss = loss + self.dor_weight * self.dor
        return loss

    def logs(self) -> dict[str, torch.Tensor]:
        """``loss_ce``, ``loss_<name>`` per method loss and ``loss_dor`` (unweighted), detached."""
        values = {} if self.ce is None else {"loss_ce": self.ce}
        values.update({f"loss_{name}": value for name, value in self.method.items()})
        if self.dor is not None:
            values["loss_dor"] = self.dor
        return {name: value.detach().float() for name, value in values.items()}


class DORTrainer(Trainer):
    """A ``Trainer`` for prompt-tuned CLIP classifiers with optional DOR.

    Differences from ``transformers.Trainer``:

    * the loss is ``CE + sum(method losses) + weight * L_dor`` from one forward; ``loss_ce``, ``loss_<name>`` and
      ``loss_dor`` (unweighted ``1 - mean cos``) are logged next to ``loss``, averaged over the logging interval like
      it; ``dor=None`` trains the plain method, ``DORConfig(weight=0.0)`` only monitors the outlier drift;
    * the outlier pool is built once at the start of ``train`` (on the main process first, so other ranks read its
      disk cache), and draws depend only on (seed, step, micro-batch) or (seed, epoch): identical on every rank and
      after ``resume_from_checkpoint``;
    * ``compute_metrics`` defaults to accuracy and calibration (``peft_dor.metrics.calibration_compute_metrics()``:
      ``eval_accuracy``, ``eval_ece``, ...); pass ``None`` for none;
    * ``label_names`` defaults to ``["labels"]`` and ``ddp_find_unused_parameters`` to ``False`` (every prompt tensor
      is used at every step; set it to ``True`` for a method where that does not hold);
    * ``optimizer_name="sgd"`` / ``"adam"`` and ``scheduler_name="protocol"`` select the protocol's optimiser (lr from
      ``args.learning_rate``) and its warm-up + per-epoch cosine schedule.

    With datasets that decode images lazily (``with_transform``) set ``TrainingArguments(remove_unused_columns=False)``,
    otherwise Trainer drops the image column before the transform sees it.

    Extension point: :meth:`compute_loss_terms` runs the one forward and returns a :class:`LossTerms`. A method that
    needs several gradient computations per step (ProGrad) overrides ``training_step``, calls ``compute_loss_terms``
    once, back-propagates the terms as it needs, and calls :meth:`record_loss_terms` so the logs stay complete.

    Args:
        model: a ``PeftModel`` from ``get_peft_model(clip, <method config>)``.
        args: ``TrainingArguments``.
        dor: a :class:`~peft_dor.DORConfig` or a ready :class:`~peft_dor.DORRegularizer`; ``None`` for no DOR.
        compute_metrics: as in ``Trainer``; default accuracy + calibration.
        optimizer_name: ``"sgd"`` or ``"adam"`` for the protocol's optimiser; ``None`` for ``args.optim``.
        optimizer_kwargs: overrides of the protocol optimiser's defaults (momentum 0.9, weight decay 5e-4, ...). A
            non-zero ``args.weight_decay`` replaces the protocol's 5e-4 too.
        scheduler_name: ``"protocol"`` for warm-up + per-epoch cosine; ``None`` for ``args.lr_scheduler_type``.
        scheduler_kwargs: e.g. ``{"warmup_lr": 1e-5, "warmup_epochs": 1}``.
        **kwargs: every other ``Trainer`` argument (``train_dataset``, ``data_collator``, ``callbacks`` ...).

    Example:
        ```python
        from peft_dor import DORConfig, DORTrainer

        args = TrainingArguments("out", num_train_epochs=10, learning_rate=0.002, per_device_train_batch_size=32,
                                 remove_unused_columns=False, logging_steps=10)
        trainer = DORTrainer(model=model, args=args, train_dataset=train, eval_dataset=test, data_collator=collate,
                             dor=DORConfig(), optimizer_name="sgd", scheduler_name="protocol")
        trainer.train()
        trainer.evaluate()  # {'eval_loss': ..., 'eval_accuracy': ..., 'eval_ece': ..., ...}
        ```
    """

    # The loss is a per-batch mean; Trainer divides it by the accumulation steps itself.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model=None,
        args: TrainingArguments | None = None,
        *,
        dor: DORConfig | DORRegularizer | None = None,
        compute_metrics: Any = _DEFAULT,
        optimizer_name: str | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler_name: str | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = TrainingArguments(output_dir="trainer_output")
        if args.label_names is None:
            # Trainer would inspect PeftModel.forward's signature, which does not name the labels.
            args.label_names = ["labels"]
        if args.ddp_find_unused_parameters is None:
            # PeftModel is no PreTrainedModel, so Trainer would default to True: slower, and every prompt is used.
            args.ddp_find_unused_parameters = False
        if compute_metrics is _DEFAULT:
            compute_metrics = default_compute_metrics()
        if isinstance(dor, DORConfig):
            dor = DORRegularizer(dor)
        if dor is not None and not isinstance(dor, DORRegularizer):
            raise TypeError(f"`dor` must be a DORConfig, a DORRegularizer or None; got {type(dor).__name__}.")
        self.dor: DORRegularizer | None = dor
        self.optimizer_name = optimizer_name
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.scheduler_name = scheduler_name
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        self._steps_per_epoch: int | None = None
        self._num_epochs: int | None = None
        self._draw_position: tuple[int, int] | None = None
        self._loss_sums: dict[str, torch.Tensor] = {}
        self._loss_sums_start = 0
        super().__init__(model=model, args=args, compute_metrics=compute_metrics, **kwargs)
        # PromptCLIP.forward takes no **kwargs, so the loss is never normalised by num_items_in_batch.
        self.model_accepts_loss_kwargs = False
        self._warn_about_unused_columns()

    def _warn_about_unused_columns(self) -> None:
        dataset = self.train_dataset
        lazy = getattr(dataset, "_format_type", None) == "custom"  # datasets' with_transform / set_transform
        if self.args.remove_unused_columns and (lazy or "image" in (getattr(dataset, "column_names", None) or [])):
            logger.warning(
                "The training set has an 'image' column or a lazy transform, and remove_unused_columns=True makes "
                "Trainer drop columns before they reach the transform or collator. Set "
                "TrainingArguments(remove_unused_columns=False)."
            )

    # ---------------------------------------------------------------------------------------------------------- DOR
    def prepare_dor(self) -> None:
        """Build the outlier pool for the model's class names, once (the main process first, then the others)."""
        if self.dor is None or self.dor.is_built:
            return
        with self.args.main_process_first(desc="DOR outlier pool"):
            self.dor.build_pool(
                self.model, seed=self.args.seed, progress=self.is_local_process_zero() and not self.args.disable_tqdm
            )
        logger.info(
            "DOR: %d outliers per draw from a %s pool of %d; weight %s.",
            self.dor.num_outliers,
            self.dor.pool.selection,
            len(self.dor.pool),
            self.dor.weight,
        )

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        self._draw_position = None
        self._loss_sums = {}
        self.prepare_dor()
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        # (num_train_epochs, num_update_steps_per_epoch, ...): the epoch length drives epoch draws and the schedule.
        self._num_epochs, self._steps_per_epoch = int(values[0]), int(values[1])
        return values

    def next_draw(self) -> OutlierDraw:
        """The outliers of the next training forward: micro-batch ``m`` of optimiser step ``s`` is draw ``s * GA + m``
        (``resample="step"``) or the epoch ``s // steps_per_epoch`` (``resample="epoch"``)."""
        self.prepare_dor()
        step = self.state.global_step
        micro = self._draw_position[1] + 1 if self._draw_position and self._draw_position[0] == step else 0
        self._draw_position = (step, micro)
        if self._steps_per_epoch:
            epoch = step // self._steps_per_epoch
        else:
            epoch = int(self.state.epoch or 0)
        return self.dor.draw(
            step=step, micro_step=micro, epoch=epoch, accumulation_steps=self.args.gradient_accumulation_steps
        )

    # --------------------------------------------------------------------------------------------------------- loss
    def compute_loss_terms(self, model, inputs: dict[str, Any]) -> LossTerms:
        """One forward through ``model`` (the object Trainer passes, DDP-wrapped or not) and the named loss parts."""
        training = model.training
        draw = self.next_draw() if self.dor is not None and training else None
        extra = draw.model_kwargs() if draw is not None else {}
        outputs = model(**inputs, **extra)
        method = dict(outputs.losses or {}) if training else {}
        dor = self.dor.loss(outputs, draw) if draw is not None else None
        weight = float(self.dor.weight) if draw is not None else 0.0
        return LossTerms(outputs=outputs, ce=outputs.loss, method=method, dor=dor, dor_weight=weight, draw=draw)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        terms = self.compute_loss_terms(model, inputs)
        if model.training:
            loss = terms.total()
            self.record_loss_terms(terms)
        else:
            loss = terms.ce if terms.ce is not None else terms.outputs.logits.new_zeros(())
        # Only the logits: prediction_step turns every other key into part of the predictions.
        return (loss, {"logits": terms.outputs.logits}) if return_outputs else loss

    def record_loss_terms(self, terms: LossTerms) -> None:
        """Add one micro-batch's loss parts to the running sums logged (and reset) with the next ``loss``."""
        if not self._loss_sums:
            self._loss_sums_start = self.state.global_step
        # Like Trainer's running loss: a step's value is the mean over its micro-batches.
        scale = max(int(getattr(self, "current_gradient_accumulation_steps", 1) or 1), 1)
        for name, value in terms.logs().items():
            value = value / scale
            self._loss_sums[name] = value if name not in self._loss_sums else self._loss_sums[name] + value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_sums:
            steps = self.state.global_step - self._loss_sums_start
            names = sorted(self._loss_sums)
            sums = torch.stack([self._loss_sums[n].to(self.args.device) for n in names])
            # Every rank logs; average over ranks as Trainer does for `loss`.
            sums = self.accelerator.gather(sums[None]).reshape(-1, len(names)).mean(dim=0)
            if steps > 0:
                logs.update({name: float(value) / steps for name, value in zip(names, sums.tolist(), strict=True)})
            self._loss_sums = {}
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if ignore_keys is None:
            ignore_keys = list(_NON_PREDICTION_KEYS)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    # ----------------------------------------------------------------------------------------- optimiser & schedule
    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.optimizer_name is None:
            return super().create_optimizer(model)
        options = dict(self.optimizer_kwargs)
        if "weight_decay" not in options and self.args.weight_decay:
            options["weight_decay"] = self.args.weight_decay
        target = self.model if model is None else model
        self.optimizer = build_optimizer(self.optimizer_name, target.parameters(), self.args.learning_rate, **options)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is not None or self.scheduler_name is None:
            return super().create_scheduler(num_training_steps, optimizer)
        steps_per_epoch = self._steps_per_epoch or num_training_steps
        num_epochs = self._num_epochs or 1
        self.lr_scheduler = build_scheduler(
            self.scheduler_name, optimizer or self.optimizer, steps_per_epoch, num_epochs, **self.scheduler_kwargs
        )
        self._created_lr_scheduler = True  # Trainer rebuilds schedules it created itself on a new `train` call
        return self.lr_scheduler

    # ------------------------------------------------------------------------------------------------------ helpers
    def prompt_model(self):
        """The ``PromptCLIP`` inside the trained model (for ``zero_shot_text_features`` and friends)."""
        return unwrap_prompt_model(self.accelerator.unwrap_model(self.model))
