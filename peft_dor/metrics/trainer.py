# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""A ``compute_metrics`` for ``transformers.Trainer`` that reports accuracy and calibration.

It needs nothing from transformers at import time: ``EvalPrediction`` is read by duck typing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .accumulator import CalibrationAccumulator
from .functional import (
    EDGE_RULES,
    MCE_VARIANTS,
    EdgeRule,
    MCEVariant,
    calibration_report,
    check_choice,
    check_from_logits,
    check_n_bins,
)

__all__ = ["calibration_compute_metrics"]


def _first(x: Any) -> Any:
    # Models that return extra outputs (hidden states, features) make Trainer hand over a tuple; logits come first.
    # Lists are left alone: a nested list is a legitimate (N, C) array.
    while isinstance(x, tuple) and len(x) > 0:
        x = x[0]
    return x


def _unpack(eval_pred: Any) -> tuple[Any, Any]:
    if hasattr(eval_pred, "predictions"):
        preds, labels = eval_pred.predictions, eval_pred.label_ids
    else:  # a plain (predictions, label_ids) tuple, as in older Trainer versions and hand calls
        preds, labels = eval_pred[0], eval_pred[1]
    if labels is None:
        raise ValueError(
            "`label_ids` is None: Trainer found no labels. Set TrainingArguments(label_names=['labels']) and make the "
            "collator return a 'labels' entry."
        )
    return _first(preds), _first(labels)


def calibration_compute_metrics(
    n_bins: int = 15,
    *,
    mce_variant: MCEVariant = "standard",
    edge_rule: EdgeRule = "standard",
    from_logits: bool | None = None,
    extras: bool = False,
) -> Callable[..., dict[str, float]]:
    """Builds a ``compute_metrics`` so that ``Trainer.evaluate()`` reports accuracy and calibration.

    The returned function takes an ``EvalPrediction`` (or a ``(predictions, label_ids)`` tuple) with logits of shape
    ``(N, C)`` and labels ``(N,)`` and returns :func:`~peft_dor.metrics.calibration_report`'s keys ``accuracy``,
    ``ece``, ``mce``, ``ace``, ``nll`` and ``brier`` (Trainer prefixes them: ``eval_ece`` ...). If predictions are a
    tuple (a model returning more than logits), the first element is used.

    Under DDP, Trainer gathers the whole evaluation set (padding duplicates dropped) before calling
    ``compute_metrics`` on every rank, so every rank reports the same full-set numbers. With
    ``TrainingArguments(batch_eval_metrics=True)`` the function accumulates the raw per-sample values of each
    (already gathered) batch and reports on the last one, which gives the same numbers as the default mode.

    Args:
        n_bins: Number of bins for ECE, MCE and adaptive ECE (the DOR paper uses 10).
        mce_variant: ``"standard"`` or ``"weighted"`` (the DOR paper's count-weighted MCE).
        edge_rule: ``"standard"`` or ``"lab"`` (see :func:`~peft_dor.metrics.expected_calibration_error`).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.
        extras: Also report ``rmsce``, ``confidence``, ``n_bins`` and ``n_samples``.

    Returns:
        A callable ``compute_metrics(eval_pred, compute_result=None) -> dict``.

    Example:
        >>> import numpy as np
        >>> compute_metrics = calibration_compute_metrics(n_bins=10)
        >>> metrics = compute_metrics((np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0])))
        >>> sorted(metrics)
        ['accuracy', 'ace', 'brier', 'ece', 'mce', 'nll']

        With a Trainer (``metric_for_best_model="ece"`` and ``greater_is_better=False`` select the best-calibrated
        checkpoint)::

            trainer = Trainer(model=model, args=args, eval_dataset=ds, compute_metrics=calibration_compute_metrics())
            trainer.evaluate()["eval_ece"]
    """
    n_bins = check_n_bins(n_bins)
    mce_variant = check_choice(mce_variant, MCE_VARIANTS, "mce_variant")
    edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
    from_logits = check_from_logits(from_logits)
    options = {"mce_variant": mce_variant, "edge_rule": edge_rule, "from_logits": from_logits, "extras": extras}
    # Batches reaching compute_metrics are already gathered by Trainer: never all-gather them again.
    batches = CalibrationAccumulator(n_bins, sync_dist=False, **options)

    def compute_metrics(eval_pred: Any, compute_result: bool | None = None) -> dict[str, float]:
        preds, labels = _unpack(eval_pred)
        if compute_result is None:
            return calibration_report(preds, labels, n_bins, **options)
        batches.update(preds, labels)
        if not compute_result:
            return {}
        try:
            return batches.compute()
        finally:
            batches.reset()

    compute_metrics.n_bins = n_bins  # type: ignore[attr-defined]
    return compute_metrics
