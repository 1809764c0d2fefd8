"""Base-to-new and domain-generalisation evaluation, and the paper's result tables.

* :func:`evaluate_split`: logits of a prompt-tuned CLIP on one test set over a given class list, and the calibration
  report (accuracy, ECE, MCE, ACE, NLL, Brier; fractions in [0, 1]).
* :func:`evaluate_base_to_new`: the protocol's main task: base test over the base classes, then, after
  ``set_class_names``, the new test over the new classes only; ``hm`` combines them (harmonic mean for accuracy,
  arithmetic mean for the calibration metrics, as the published ECE tables do; docs/protocol.md).
* :func:`evaluate_domain_generalization`: a source test set and target test sets, each scored over its own classes.

The protocol's tables over many runs' ``results.json`` files are the protocol runner's (:mod:`peft_dor.cli.tables`).

Under ``accelerate``/DDP pass the ``trainer``: ``Trainer.predict`` gathers the whole test set from every process
(padding duplicates dropped) before any metric is computed.

Example:
    ```python
    from peft_dor.evaluation import evaluate_base_to_new

    result = evaluate_base_to_new(model, base_test, new_test, base_names, new_names, n_bins=10)
    result.to_dict()["hm"]   # {'accuracy': ..., 'ece': ..., ...}
    ```
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: metrics combined with the harmonic mean in the "HM" column; every other metric uses the arithmetic mean
HARMONIC_METRICS = frozenset({"accuracy"})
_COUNT_KEYS = frozenset({"n_samples", "n_bins"})


def harmonic_mean(base: float, new: float) -> float:
    """``2 B N / (B + N)`` (0 when both are 0).

    Example:
        >>> round(harmonic_mean(0.8269, 0.6322), 4)
        0.7166
    """
    return 0.0 if base + new == 0 else 2.0 * base * new / (base + new)


def combine_base_new(base: Mapping[str, float], new: Mapping[str, float]) -> dict[str, float]:
    """The "HM" entry of a base-to-new result: harmonic mean of accuracy, arithmetic mean of everything else.

    The published ECE tables' "HM" column is the arithmetic mean ``(B + N) / 2`` (docs/protocol.md); accuracy's
    is the true harmonic mean.

    Example:
        >>> combine_base_new({"accuracy": 0.8, "ece": 0.03}, {"accuracy": 0.6, "ece": 0.15})
        {'accuracy': 0.6857142857142857, 'ece': 0.09}
    """
    out: dict[str, float] = {}
    for key, b in base.items():
        if key in _COUNT_KEYS or key not in new or not isinstance(b, (int, float)):
            continue
        n = new[key]
        out[key] = harmonic_mean(b, n) if key in HARMONIC_METRICS else (b + n) / 2.0
    return out


def _set_class_names(model, class_names: Sequence[str] | None) -> None:
    if class_names is None:
        return
    target = model
    while not hasattr(target, "set_class_names") and hasattr(target, "module"):
        target = target.module  # DDP / accelerate wrappers
    target.set_class_names(list(class_names))


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@torch.no_grad()
def predict_logits(
    model,
    dataset,
    *,
    trainer=None,
    batch_size: int = 64,
    collate_fn=None,
    device: torch.device | str | None = None,
    desc: str = "Evaluating",
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N, C), labels (N,))`` of ``model`` on a transformed dataset (rows with pixel values and labels).

    With a ``trainer``, ``trainer.predict`` runs the loop (distributed, gathered, with the Trainer's precision);
    otherwise a plain loop with a progress bar on ``device`` (default: the model's).
    """
    if trainer is not None:
        # Every test image counts: a drop_last meant for training batches must not drop an incomplete test batch.
        drop_last, trainer.args.dataloader_drop_last = trainer.args.dataloader_drop_last, False
        try:
            out = trainer.predict(dataset)
        finally:
            trainer.args.dataloader_drop_last = drop_last
        if out.label_ids is None:
            raise ValueError("Trainer returned no labels; set TrainingArguments(label_names=['labels']).")
        return np.asarray(_first(out.predictions), dtype=np.float32), np.asarray(_first(out.label_ids))
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .data.transforms import ImageClassificationCollator

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_fn or ImageClassificationCollator(),
        num_workers=num_workers,
    )
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch in tqdm(loader, desc=desc, leave=False):
            labels.append(batch.pop("labels").numpy())
            out = model(pixel_values=batch["pixel_values"].to(device))
            logits.append(out.logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(logits), np.concatenate(labels)


@dataclass
class SplitEvaluation:
    """The evaluation of one test set: metrics (fractions) and the raw logits and labels behind them."""

    metrics: dict[str, float]
    logits: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    class_names: list[str] = field(repr=False)

    def plot(self, path: str | os.PathLike | None = None, title: str | None = None, n_bins: int | None = None):
        """The reliability diagram of this split (matplotlib figure), saved to ``path`` if given."""
        from .metrics import plot_reliability_diagram

        n_bins = n_bins or int(self.metrics.get("n_bins", 10))
        return plot_reliability_diagram(self.logits, self.labels, n_bins, from_logits=True, title=title, path=path)


def evaluate_split(
    model,
    dataset,
    class_names: Sequence[str] | None = None,
    *,
    n_bins: int = 10,
    trainer=None,
    report_kwargs: Mapping[str, Any] | None = None,
    **predict_kwargs,
) -> SplitEvaluation:
    """Classify ``dataset`` among ``class_names`` (default: the model's current classes) and score it.

    Args:
        model: a prompt-tuned CLIP (``PeftModel`` from ``get_peft_model``/``PeftModel.from_pretrained``).
        dataset: rows with ``pixel_values`` and ``labels`` (see :func:`peft_dor.data.with_clip_transform`).
        class_names: classes to classify among; ``model.set_class_names`` is called with them.
        n_bins: bins of ECE / MCE / ACE (10 as in the DOR lab's code).
        trainer: run through ``trainer.predict`` (distributed evaluation).
        report_kwargs: extra arguments of :func:`peft_dor.metrics.calibration_report` (``edge_rule``,
            ``mce_variant``).
    """
    from .metrics import calibration_report

    _set_class_names(model if trainer is None else trainer.model, class_names)
    logits, labels = predict_logits(model, dataset, trainer=trainer, **predict_kwargs)
    metrics = calibration_report(logits, labels, n_bins, from_logits=True, **dict(report_kwargs or {}))
    metrics["n_samples"] = len(labels)
    metrics["n_bins"] = n_bins
    names = list(class_names) if class_names is not None else []
    return SplitEvaluation(metrics, logits, labels, names)


@dataclass
class BaseToNewEvaluation:
    """Base and new evaluations of one run and their combination (see :func:`combine_base_new`)."""

    base: SplitEvaluation
    new: SplitEvaluation

    @property
    def hm(self) -> dict[str, float]:
        return combine_base_new(self.base.metrics, self.new.metrics)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{"base": {...}, "new": {...}, "hm": {...}}`` with fractions, as written to ``results.json``."""
        return {"base": dict(self.base.metrics), "new": dict(self.new.metrics), "hm": self.hm}


def evaluate_base_to_new(
    model,
    base_test,
    new_test,
    base_names: Sequence[str],
    new_names: Sequence[str],
    **kwargs,
) -> BaseToNewEvaluation:
    """The protocol's base-to-new evaluation of a model trained on the base classes.

    The base test set is classified among the base classes; then the same prompts classify the new test set among
    the new classes only (never base ∪ new). The model is left classifying the base classes.

    Args:
        model: the trained prompt-tuned CLIP.
        base_test / new_test: transformed test sets, labels relabelled from 0 within each side.
        base_names / new_names: the two class lists.
        **kwargs: passed to :func:`evaluate_split` (``n_bins``, ``trainer``, ``batch_size`` ...).
    """
    target = model if kwargs.get("trainer") is None else kwargs["trainer"].model
    try:
        base = evaluate_split(model, base_test, base_names, **kwargs)
        new = evaluate_split(model, new_test, new_names, **kwargs)
    finally:
        _set_class_names(target, base_names)
    return BaseToNewEvaluation(base, new)


@dataclass
class DomainGeneralizationEvaluation:
    """Source and target evaluations; ``target_mean`` averages each metric over the targets."""

    source: SplitEvaluation
    targets: dict[str, SplitEvaluation]

    @property
    def target_mean(self) -> dict[str, float]:
        keys = [k for k in self.source.metrics if k not in _COUNT_KEYS]
        return {k: float(np.mean([t.metrics[k] for t in self.targets.values()])) for k in keys} if self.targets else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": dict(self.source.metrics),
            "targets": {name: dict(t.metrics) for name, t in self.targets.items()},
            "target_mean": self.target_mean,
        }


def evaluate_domain_generalization(
    model,
    source: tuple[Any, Sequence[str]],
    targets: Mapping[str, tuple[Any, Sequence[str]]],
    **kwargs,
) -> DomainGeneralizationEvaluation:
    """Evaluate on the source test set and on each target test set over its own class list.

    Args:
        source: ``(transformed test dataset, class names)`` of the training dataset (ImageNet).
        targets: ``{name: (transformed test dataset, class names)}`` (ImageNet-V2, -Sketch, -A, -R).
        **kwargs: passed to :func:`evaluate_split`.
    """
    source_eval = evaluate_split(model, source[0], source[1], **kwargs)
    target = model if kwargs.get("trainer") is None else kwargs["trainer"].model
    try:
        target_evals = {name: evaluate_split(model, ds, names, **kwargs) for name, (ds, names) in targets.items()}
    finally:
        _set_class_names(target, source[1])
    return DomainGeneralizationEvaluation(source_eval, target_evals)


# ----------------------------------------------------------------------------------------------------------------
