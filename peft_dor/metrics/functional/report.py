# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""The one-call report of every top-label metric, and the ``x100`` scaling papers print."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .binning import bin_sums, reduce_bins, uniform_bin_index
from .calibration_error import adaptive_ce, lab_ce
from .inputs import EDGE_RULES, MCE_VARIANTS, ArrayLike, EdgeRule, MCEVariant, check_choice, check_n_bins
from .top_label import TopLabelStats, top_label_stats

__all__ = ["REPORT_KEYS", "as_percent", "calibration_report", "calibration_report_from_stats"]

#: The keys of :func:`calibration_report` (without ``extras``), in order.
REPORT_KEYS = ("accuracy", "ece", "mce", "ace", "nll", "brier")


def calibration_report_from_stats(
    stats: TopLabelStats,
    n_bins: int = 15,
    mce_variant: MCEVariant = "standard",
    edge_rule: EdgeRule = "standard",
    extras: bool = False,
) -> dict[str, float]:
    """:func:`calibration_report` of per-sample values already computed, e.g. gathered from every rank.

    Binned metrics are not decomposable, so wrappers that see the data in batches (the accumulator, the Trainer hook)
    keep the :class:`~peft_dor.metrics.TopLabelStats` of every batch and bin them once here.

    Args:
        stats: Per-sample confidence, correctness, NLL and Brier terms (from :func:`top_label_stats`).
        n_bins: Number of bins for ECE, MCE and adaptive ECE (>= 1).
        mce_variant: ``"standard"`` or ``"weighted"``.
        edge_rule: ``"standard"`` or ``"lab"``; affects ``ece`` (and ``rmsce``) only.
        extras: Also return ``rmsce``, the mean ``confidence``, ``n_bins`` and ``n_samples``.

    Returns:
        The same dict as :func:`calibration_report`.

    Raises:
        ValueError: If ``stats`` holds no samples, or on a bad option.
    """
    n_bins = check_n_bins(n_bins)
    mce_variant = check_choice(mce_variant, MCE_VARIANTS, "mce_variant")
    edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
    conf, correct = stats.confidence, stats.correct
    if conf.shape[0] == 0:
        raise ValueError("No samples to compute calibration metrics on (`preds` is empty).")
    idx = uniform_bin_index(conf, n_bins)
    bins = bin_sums(idx, conf, correct, n_bins)
    n = conf.shape[0]
    if edge_rule == "lab":
        ece = lab_ce(conf, correct, n_bins, "l1")
    else:
        ece = reduce_bins(bins, n, "l1")
    report = {
        "accuracy": float(correct.mean()),
        "ece": ece,
        "mce": reduce_bins(bins, n, "max", weighted_max=mce_variant == "weighted"),
        "ace": adaptive_ce(conf, correct, n_bins),
        "nll": float(stats.nll.mean()),
        "brier": float(stats.brier.mean()),
    }
    if extras:
        report["rmsce"] = lab_ce(conf, correct, n_bins, "l2") if edge_rule == "lab" else reduce_bins(bins, n, "l2")
        report["confidence"] = float(conf.mean())
        report["n_bins"] = n_bins
        report["n_samples"] = n
    return report


def calibration_report(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    mce_variant: MCEVariant = "standard",
    edge_rule: EdgeRule = "standard",
    from_logits: bool | None = None,
    extras: bool = False,
) -> dict[str, float]:
    """All top-label metrics in one pass: ``accuracy``, ``ece``, ``mce``, ``ace``, ``nll`` and ``brier``.

    The same numbers as :func:`accuracy`, :func:`expected_calibration_error`, :func:`maximum_calibration_error`,
    :func:`adaptive_calibration_error` (all with ``n_bins``), :func:`negative_log_likelihood` and :func:`brier_score`,
    from one softmax. Fractions, not percentages: see :func:`as_percent`.

    To reproduce the DOR paper's tables use ``n_bins=10, mce_variant="weighted", edge_rule="lab"`` and
    :func:`as_percent`.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of bins for ECE, MCE and adaptive ECE (>= 1).
        mce_variant: ``"standard"`` (unweighted, torchmetrics/netcal) or ``"weighted"`` (the DOR code's).
        edge_rule: ``"standard"`` or ``"lab"`` (see :func:`expected_calibration_error`); affects ``ece`` only.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.
        extras: Also return ``rmsce``, the mean ``confidence``, ``n_bins`` and ``n_samples``.

    Returns:
        A dict of Python floats (and ints for ``n_bins``/``n_samples``).

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> report = calibration_report(probs, [0, 1, 1, 0], n_bins=5)
        >>> sorted(report)
        ['accuracy', 'ace', 'brier', 'ece', 'mce', 'nll']
        >>> report["accuracy"], round(report["ece"], 4)
        (0.75, 0.35)
    """
    n_bins = check_n_bins(n_bins)
    mce_variant = check_choice(mce_variant, MCE_VARIANTS, "mce_variant")
    edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
    stats = top_label_stats(preds, labels, from_logits=from_logits)
    return calibration_report_from_stats(stats, n_bins, mce_variant, edge_rule, extras)


# Name components that mark a fraction worth showing x100; "nll", "brier", "loss", "n_bins" are left alone.
_PERCENT_TOKENS = frozenset(
    {"accuracy", "acc", "error", "ece", "mce", "ace", "rmsce", "piece", "confidence", "hm", "classwise"}
)


def _is_percent_key(key: str) -> bool:
    return any(token in _PERCENT_TOKENS for token in key.lower().split("_"))


def as_percent(
    value: float | Mapping[str, Any],
    ndigits: int | None = None,
    *,
    keys: Sequence[str] | None = None,
) -> float | dict[str, Any]:
    """Scales fractions to the ``x100`` percentages the DOR paper (and most calibration papers) print.

    A float is multiplied by 100. A mapping (e.g. :func:`calibration_report`'s dict or ``Trainer.evaluate()``'s
    metrics) is copied with the calibration and accuracy entries scaled: keys with an underscore-separated component
    among ``accuracy, acc, error, ece, mce, ace, rmsce, piece, confidence, hm, classwise`` (so ``"ece"``,
    ``"eval_ece"`` and ``"ece_base"`` are scaled), or exactly ``keys`` when given. ``nll``, ``brier``, losses and
    counts are left as they are.

    Args:
        value: A fraction or a mapping of metrics.
        ndigits: Round the scaled numbers to this many decimals (``None`` keeps full precision).
        keys: Explicit keys to scale instead of the name rule.

    Returns:
        A float, or a new dict.

    Example:
        >>> as_percent(0.03071, ndigits=2)
        3.07
        >>> as_percent({"ece": 0.0307, "nll": 1.2, "n_bins": 10}, ndigits=2)
        {'ece': 3.07, 'nll': 1.2, 'n_bins': 10}
    """

    def scale(x: float) -> float:
        y = float(x) * 100.0
        return round(y, ndigits) if ndigits is not None else y

    if isinstance(value, Mapping):
        chosen = set(keys) if keys is not None else None
        return {
            k: scale(v) if (k in chosen if chosen is not None else _is_percent_key(str(k))) else v
            for k, v in value.items()
        }
    return scale(value)
