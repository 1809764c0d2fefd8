"""DORTrainer: ``transformers.Trainer`` for peft-dor prompt methods, with Dynamic Outlier Regularization.

Each training step makes exactly one forward through the (possibly DDP-wrapped) model. That forward returns the
class logits with the cross-entropy, the method's own weighted losses and, when DOR is on, the prompted features of the
drawn outliers; the loss is ``CE + sum(method losses) + weight * L_dor``. Under DDP a second call through a submodule
would break gradient synchronisation, which is why everything comes out of the one call.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..dor.outliers import unwrap_prompt_model
from ..dor.regularizer import DORConfig, DORRegularizer, OutlierDraw
from ..registry import method_spec_or_none, trainer_class_for
from .saving import staged_directory
from .schedule import build_optimizer, build_scheduler, check_optimizer_settings
from .terms import LossTerms

logger = logging.getLogger(__name__)

_DEFAULT = object()  # "compute_metrics not given": accuracy + calibration (explicit None turns metrics off)
# Output fields that are not predictions: dropped when Trainer predicts without labels.
_NON_PREDICTION_KEYS = ["image_embeds", "text_embeds", "losses", "extra_text_embeds", "extra_image_embeds"]
#: written last into every Trainer checkpoint, so its presence marks a complete checkpoint
TRAINER_STATE_NAME = "trainer_state.json"
ADAPTER_WEIGHTS_NAMES = ("adapter_model.safetensors", "adapter_model.bin")


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

    What a method's training needs beyond its losses, its folder declares (``peft_dor.method_spec(model)``) and the
    trainer composes: Trainer mixins go in front of the trainer's bases (``DORTrainer(model=prograd_model, ...)`` is a
    ``ProGradMixin`` + ``DORTrainer``, so ProGrad's gradient projection applies), and callbacks are added unless a
    callback of the same class was passed (PromptSRC's Gaussian prompt aggregation, with ``method_options``). A
    callback with a ``resume_checkpoint`` attribute is told the checkpoint ``train`` resumes from.

    Extension point: :meth:`compute_loss_terms` runs the one forward and returns a :class:`LossTerms`. A method that
    needs several gradient computations per step (ProGrad) overrides ``training_step`` in its mixin, calls
    ``compute_loss_terms`` once, back-propagates the terms as it needs, and calls :meth:`record_loss_terms` so the
    logs stay complete.

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
        method_options: options of the method's own training (its spec's ``options`` dataclass, e.g.
            ``{"gpa_mean": 15, "gpa_std": 1}`` for PromptSRC), as a dict or an instance; None: its defaults.
        stop_on_nonfinite_loss: stop with ``FloatingPointError`` (naming the step and the loss component: ``ce``,
            ``dor`` or a method loss) as soon as a training loss is NaN or infinite, before the update. It costs one
            host synchronisation per micro-batch (the forward already makes one to check the labels).
        **kwargs: every other ``Trainer`` argument (``train_dataset``, ``data_collator``, ``callbacks`` ...).

    Reliability: adapters and checkpoints are written through a staging folder (``peft_dor.training.saving``), so a
    crash never leaves a half-written weights file that loads; ``resume_from_checkpoint=True`` skips a last checkpoint
    whose writing was interrupted, and a path to an incomplete one is refused with the files it lacks.

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

    def __new__(cls, model=None, *args: Any, **kwargs: Any):
        # The active method's Trainer mixins (ProGrad's projection) go in front of this class's bases, so the class a
        # user names needs no per-method variant; a class that already has them is used as it is.
        return super().__new__(trainer_class_for(cls, model))

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
        stop_on_nonfinite_loss: bool = True,
        method_options: Any = None,
        **kwargs: Any,
    ) -> None:
        check_optimizer_settings(optimizer_name, optimizer_kwargs, scheduler_name, scheduler_kwargs)
        if args is not None and not isinstance(args, TrainingArguments):
            raise TypeError(f"`args` must be a transformers TrainingArguments; got {type(args).__name__}.")
        if model is not None:
            unwrap_prompt_model(model)  # TypeError unless it is a peft-dor prompt model
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
        if dor is not None and model is not None:
            dor.check_model(model)  # cheap: side, prompts to regularise, outlier images; no vocabulary is loaded
        if scheduler_name is not None and not args.learning_rate > 0:
            raise ValueError(
                f"scheduler_name={scheduler_name!r} needs a positive TrainingArguments.learning_rate; got "
                f"{args.learning_rate!r}."
            )
        self.dor: DORRegularizer | None = dor
        self.stop_on_nonfinite_loss = bool(stop_on_nonfinite_loss)
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
        self._add_method_callbacks(model, method_options)
        self._warn_about_unused_columns()

    def _add_method_callbacks(self, model, options) -> None:
        spec = method_spec_or_none(model)
        if spec is None:
            if options is not None:
                raise ValueError(
                    "`method_options` needs a peft-dor prompt model to apply to; drop them or pass a model."
                )
            return
        options = spec.make_options(options)
        present = {type(callback) for callback in self.callback_handler.callbacks}
        for callback in spec.training_callbacks(options):
            if type(callback) not in present:  # the user's own instance (other settings) wins
                self.add_callback(callback)

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
        resume_from_checkpoint = self.resolve_checkpoint(resume_from_checkpoint)
        for callback in self.callback_handler.callbacks:
            if hasattr(callback, "resume_checkpoint"):  # callbacks with state in the checkpoint (GPA's running sum)
                callback.resume_checkpoint = resume_from_checkpoint
        self._draw_position = None
        self._loss_sums = {}
        self.prepare_dor()
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )

    def resolve_checkpoint(self, resume_from_checkpoint: str | bool | None) -> str | None:
        """The checkpoint ``train`` resumes from: ``True`` means the last *complete* one in ``args.output_dir`` (one
        whose writing was interrupted is skipped with a warning); a path must be a complete checkpoint.

        A checkpoint is complete when it holds the adapter weights and a readable ``trainer_state.json``, which
        ``Trainer`` writes last.

        Raises:
            ValueError: no complete checkpoint in ``args.output_dir`` (``True``), or the given one is incomplete.
        """
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        if resume_from_checkpoint is True:
            folder = self.args.output_dir
            names = os.listdir(folder) if os.path.isdir(folder) else []
            steps = sorted(
                (int(name.rsplit("-", 1)[1]), name)
                for name in names
                if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.rsplit("-", 1)[1].isdigit()
            )
            for _, name in reversed(steps):
                path = os.path.join(folder, name)
                missing = checkpoint_problems(path)
                if not missing:
                    return path
                logger.warning("Skipping the incomplete checkpoint %s (%s).", path, "; ".join(missing))
            raise ValueError(
                f"resume_from_checkpoint=True but {folder!r} holds no complete checkpoint "
                f"({PREFIX_CHECKPOINT_DIR}-<step> with adapter weights and {TRAINER_STATE_NAME}); start without it."
            )
        path = os.fspath(resume_from_checkpoint)
        if not os.path.isdir(path):
            raise ValueError(
                f"`resume_from_checkpoint` must be a checkpoint folder or True; {path!r} is not a folder."
            )
        problems = checkpoint_problems(path)
        if problems:
            raise ValueError(
                f"The checkpoint {path!r} is incomplete ({'; '.join(problems)}): its writing was interrupted. Resume "
                "from an earlier checkpoint (resume_from_checkpoint=True picks the last complete one)."
            )
        return path

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
            if self.stop_on_nonfinite_loss:
                self.check_finite_loss(terms, loss)
            self.record_loss_terms(terms)
        else:
            loss = terms.ce if terms.ce is not None else terms.outputs.logits.new_zeros(())
        # Only the logits: prediction_step turns every other key into part of the predictions.
        return (loss, {"logits": terms.outputs.logits}) if return_outputs else loss

    def loss_components(self, terms: LossTerms) -> dict[str, torch.Tensor]:
        """The named parts of a training loss that :meth:`check_finite_loss` inspects: ``ce``, each method loss and
        ``dor`` (unweighted); subclasses add their own (ProGrad: ``prograd_kl``)."""
        parts = {} if terms.ce is None else {"ce": terms.ce}
        parts.update(terms.method)
        if terms.dor is not None:
            parts["dor"] = terms.dor
        return parts

    def check_finite_loss(self, terms: LossTerms, loss: torch.Tensor) -> None:
        """Raise ``FloatingPointError`` naming the step and the loss components that are NaN or infinite."""
        parts = {name: value.detach().float().reshape(()) for name, value in self.loss_components(terms).items()}
        values = torch.stack([loss.detach().float().reshape(()), *parts.values()])
        if bool(torch.isfinite(values).all()):  # the one host synchronisation
            return
        bad = [f"{name}={float(value)}" for name, value in parts.items() if not torch.isfinite(value)]
        if not bad:  # finite parts, non-finite sum: the weights overflow
            bad = [f"the weighted sum {float(loss)} (DOR weight {terms.dor_weight})"]
        where = f"step {self.state.global_step + 1}"
        if self.args.gradient_accumulation_steps > 1 and terms.draw is not None:
            where += f", micro-batch {self._draw_position[1]}"  # DOR's draw counter knows which one
        raise FloatingPointError(
            f"Training stopped at {where} (epoch {float(self.state.epoch or 0):.2f}): the loss is not finite in "
            f"{', '.join(bad)}; all parts: {', '.join(f'{n}={float(v):.6g}' for n, v in parts.items())}. Nothing was "
            "updated for this batch. Check its inputs for NaN/inf (images, outlier images), lower the learning rate, "
            "or train in float32; checkpoints written so far are in args.output_dir."
        )

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

    # ------------------------------------------------------------------------------------------------------- saving
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return super()._save(output_dir, state_dict)
        # Trainer writes the adapter, config and model card in place; stage them and move them in, weights last.
        with staged_directory(output_dir) as staging:
            super()._save(str(staging), state_dict)

    # ------------------------------------------------------------------------------------------------------ helpers
    def prompt_model(self):
        """The ``PromptCLIP`` inside the trained model (for ``zero_shot_text_features`` and friends)."""
        return unwrap_prompt_model(self.accelerator.unwrap_model(self.model))


def checkpoint_problems(path: str | os.PathLike) -> list[str]:
    """What makes a Trainer checkpoint folder unusable for resuming (empty when it is complete)."""
    problems = []
    if not any(os.path.isfile(os.path.join(path, name)) for name in ADAPTER_WEIGHTS_NAMES):
        problems.append(f"no {ADAPTER_WEIGHTS_NAMES[0]}")
    state = os.path.join(path, TRAINER_STATE_NAME)
    try:
        with open(state, encoding="utf-8") as handle:
            json.load(handle)
    except FileNotFoundError:
        problems.append(f"no {TRAINER_STATE_NAME}")
    except (OSError, ValueError) as error:
        problems.append(f"unreadable {TRAINER_STATE_NAME} ({error})")
    return problems
