# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Binned calibration errors: ECE / RMSCE / MCE on equal-width bins, adaptive ECE, netcal's average CE, classwise ECE.

Each is a pure function of ``preds`` (logits or probabilities, shape ``(N, C)``) and ``labels`` (integers, shape
``(N,)``) returning a Python ``float`` in ``[0, 1]``; use :func:`~peft_dor.metrics.as_percent` for the ``x100``
numbers papers print. Bin conventions are in :mod:`peft_dor.metrics.functional.binning`, input rules in
:mod:`peft_dor.metrics.functional.inputs`, and the whole story in ``docs/metrics.md``.
"""

from __future__ import annotations

import math

import numpy as np

from .binning import Bins, bin_sums, quantile_bin_index, reduce_bins, uniform_bin_index, uniform_edges
from .inputs import (
    EDGE_RULES,
    MCE_VARIANTS,
    NORMS,
    ArrayLike,
    EdgeRule,
    MCEVariant,
    Norm,
    as_labels,
    check_choice,
    check_n_bins,
    probabilities,
    resolve_preds,
)
from .top_label import top_label

__all__ = [
    "adaptive_calibration_error",
    "adaptive_ce",
    "average_calibration_error",
    "classwise_calibration_error",
    "expected_calibration_error",
    "lab_ce",
    "maximum_calibration_error",
    "uniform_ce",
]


def uniform_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str, edge_rule: str = "standard") -> float:
    """The equal-width calibration error of per-sample confidences and correctness (no argument checks)."""
    if edge_rule == "lab":
        return lab_ce(conf, correct, n_bins, norm)
    idx = uniform_bin_index(conf, n_bins)
    return reduce_bins(bin_sums(idx, conf, correct, n_bins), conf.shape[0], norm)


def lab_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str) -> float:
    """ECE exactly as the DOR authors' lab code computes it (``np.digitize`` means, ``np.histogram`` weights).

    Per-bin means use left-closed bins only, so a confidence of exactly 1.0 is left out of them; the histogram weights
    close the last bin and do count it. A last bin holding only 1.0s therefore contributes nothing.
    """
    n = conf.shape[0]
    idx = np.searchsorted(uniform_edges(n_bins), conf, side="right") - 1  # == np.digitize(conf, edges) - 1
    inside = idx < n_bins
    bins = bin_sums(idx[inside], conf[inside], correct[inside], n_bins)
    safe = np.maximum(bins.counts, 1.0)
    gap = np.where(bins.counts > 0, (bins.acc_sum - bins.conf_sum) / safe, 0.0)
    weights = bins.counts.copy()
    weights[-1] += np.count_nonzero(~inside)
    weights /= n
    if norm == "l1":
        value = float(np.sum(weights * np.abs(gap)))
    elif norm == "l2":
        value = math.sqrt(float(np.sum(weights * gap**2)))
    else:
        value = float(np.max(np.abs(gap)))
    return min(max(value, 0.0), 1.0)


def adaptive_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str = "l1") -> float:
    """The equal-mass calibration error of per-sample confidences and correctness (no argument checks)."""
    idx, edges = quantile_bin_index(conf, n_bins)
    return reduce_bins(bin_sums(idx, conf, correct, edges.size - 1), conf.shape[0], norm)


def _weighted_mce(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    idx = uniform_bin_index(conf, n_bins)
    return reduce_bins(bin_sums(idx, conf, correct, n_bins), conf.shape[0], "max", weighted_max=True)


def expected_calibration_error(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    norm: Norm = "l1",
    *,
    from_logits: bool | None = None,
    edge_rule: EdgeRule = "standard",
) -> float:
    r"""Top-label calibration error on equal-width bins: ECE (``"l1"``), RMSCE (``"l2"``) or MCE (``"max"``).

    With ``M = n_bins`` bins, ``S_b`` the samples whose confidence falls in bin ``b`` and ``N`` the sample count:

    * ``"l1"``: ``ECE = sum_b |S_b|/N * |acc_b - conf_b|``
    * ``"l2"``: ``RMSCE = sqrt(sum_b |S_b|/N * (acc_b - conf_b)^2)`` (torchmetrics' ``"l2"`` without debiasing)
    * ``"max"``: ``MCE = max_b |acc_b - conf_b|`` over non-empty bins (the standard MCE; see
      :func:`maximum_calibration_error` for the count-weighted variant the DOR paper reports).

    Empty bins contribute nothing. Bins are ``[b/M, (b+1)/M)`` with the last one closed, so a confidence of exactly
    1.0 falls in the last bin and 0.0 in the first.

    Args:
        preds: Logits or probabilities of shape ``(N, C)`` (NumPy, torch or lists; any float dtype).
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of equal-width bins ``M`` (>= 1). 15 is the torchmetrics default; the DOR paper uses 10.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect (see module docstring).
        edge_rule: ``"standard"`` (above) or ``"lab"``, which reproduces the DOR authors' evaluation code exactly: a
            confidence of exactly 1.0 is counted in the last bin's weight but left out of its mean accuracy and
            confidence. The two agree whenever no confidence is exactly 1.0.

    Returns:
        The calibration error as a Python float in ``[0, 1]``.

    Raises:
        ValueError: On malformed inputs, naming the offending argument.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]])
        >>> round(expected_calibration_error(probs, [0, 1, 1, 0], n_bins=5), 4)  # bins [.6, .8) and [.8, 1]
        0.35
    """
    n_bins = check_n_bins(n_bins)
    norm = check_choice(norm, NORMS, "norm")
    edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
    conf, correct = top_label(preds, labels, from_logits)
    return uniform_ce(conf, correct, n_bins, norm, edge_rule)


def maximum_calibration_error(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    variant: MCEVariant = "standard",
    from_logits: bool | None = None,
) -> float:
    """Maximum calibration error on equal-width bins, in its two incompatible flavours.

    * ``variant="standard"``: ``max_b |acc_b - conf_b|`` over non-empty bins (torchmetrics ``norm="max"``, netcal
      ``MCE``, Guo et al. 2017). Same as ``expected_calibration_error(..., norm="max")``.
    * ``variant="weighted"``: ``max_b (n_b / N) * |acc_b - conf_b|``, the count-weighted MCE of the DOR authors' code.
      It is much smaller than the standard one; the two must never be compared.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of equal-width bins (>= 1).
        variant: ``"standard"`` or ``"weighted"``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        The MCE as a Python float in ``[0, 1]``.

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> round(maximum_calibration_error(probs, [0, 1, 1, 0], n_bins=5), 4)
        0.4
        >>> round(maximum_calibration_error(probs, [0, 1, 1, 0], n_bins=5, variant="weighted"), 4)
        0.2
    """
    n_bins = check_n_bins(n_bins)
    variant = check_choice(variant, MCE_VARIANTS, "variant")
    conf, correct = top_label(preds, labels, from_logits)
    if variant == "weighted":
        return _weighted_mce(conf, correct, n_bins)
    return uniform_ce(conf, correct, n_bins, "max")


def adaptive_calibration_error(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool | None = None,
) -> float:
    """Adaptive ECE ("ACE" in the DOR tables): ECE on equal-mass (quantile) bins of the confidences.

    ``ACE = sum_b |S_b|/N * |acc_b - conf_b|`` with bin edges at the ``M + 1`` quantiles of the confidences (linear
    interpolation, as scikit-learn's ``KBinsDiscretizer(strategy="quantile")`` which the DOR authors use). Tied edges
    (identical confidences spanning a quantile) are merged, so the effective number of bins can be smaller than
    ``n_bins``; a confidence equal to an interior edge belongs to the bin above it. Not to be confused with netcal's
    ``ACE`` (the *average* calibration error, see :func:`average_calibration_error`).

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of quantile bins requested (>= 1).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        The adaptive ECE as a Python float in ``[0, 1]``.

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> round(adaptive_calibration_error(probs, [0, 1, 1, 0], n_bins=2), 4)
        0.35
    """
    n_bins = check_n_bins(n_bins)
    conf, correct = top_label(preds, labels, from_logits)
    return adaptive_ce(conf, correct, n_bins)


def average_calibration_error(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    from_logits: bool | None = None,
) -> float:
    """Average calibration error (netcal's ``ACE``): the unweighted mean of ``|acc_b - conf_b|`` over non-empty bins.

    Equal-width bins as in :func:`expected_calibration_error`; each non-empty bin counts once whatever its size.
    Provided for parity with netcal; the DOR tables' "ACE" is :func:`adaptive_calibration_error`.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of equal-width bins (>= 1).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A Python float in ``[0, 1]``.

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> round(average_calibration_error(probs, [0, 1, 1, 0], n_bins=10), 4)
        0.375
    """
    n_bins = check_n_bins(n_bins)
    conf, correct = top_label(preds, labels, from_logits)
    bins = bin_sums(uniform_bin_index(conf, n_bins), conf, correct, n_bins)
    nonempty = bins.counts > 0
    gaps = np.abs(bins.acc_sum[nonempty] - bins.conf_sum[nonempty]) / bins.counts[nonempty]
    return float(min(gaps.mean(), 1.0))


def classwise_calibration_error(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    norm: Norm = "l1",
    *,
    from_logits: bool | None = None,
) -> float:
    """Classwise ECE (Kull et al., 2019): the calibration error of every class's probability, averaged over classes.

    For each class ``c`` the probabilities ``p_ic`` of all ``N`` samples are binned on equal-width bins and compared
    with the frequency of ``y_i == c`` in each bin; the per-class errors (with ``norm`` as in
    :func:`expected_calibration_error`) are averaged over the ``C`` classes.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of equal-width bins (>= 1).
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A Python float in ``[0, 1]``.

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> round(classwise_calibration_error(probs, [0, 1, 1, 0], n_bins=5), 4)
        0.35
    """
    n_bins = check_n_bins(n_bins)
    norm = check_choice(norm, NORMS, "norm")
    x, is_probs = resolve_preds(preds, from_logits)
    n, n_classes = x.shape
    y = as_labels(labels, n, n_classes)
    probs = probabilities(x, is_probs).numpy()
    hits = np.zeros_like(probs)
    hits[np.arange(n), y] = 1.0
    # One bincount over (class, bin) cells instead of a loop over classes.
    cell = np.arange(n_classes) * n_bins + uniform_bin_index(probs, n_bins)
    size = n_classes * n_bins
    counts = np.bincount(cell.ravel(), minlength=size).reshape(n_classes, n_bins).astype(np.float64)
    conf_sum = np.bincount(cell.ravel(), weights=probs.ravel(), minlength=size).reshape(n_classes, n_bins)
    acc_sum = np.bincount(cell.ravel(), weights=hits.ravel(), minlength=size).reshape(n_classes, n_bins)
    per_class = [reduce_bins(Bins(counts[c], conf_sum[c], acc_sum[c]), n, norm) for c in range(n_classes)]
    return float(np.mean(per_class))
