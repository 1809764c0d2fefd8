# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Functional calibration metrics: ECE, MCE, adaptive ECE, classwise ECE, PIECE, NLL, Brier and accuracy.

Every function here is a pure function of ``preds`` (logits or probabilities, shape ``(N, C)``) and ``labels``
(integers, shape ``(N,)``), accepts NumPy arrays, torch tensors (any float dtype, including ``float16`` and
``bfloat16``, on any device) or nested lists, and returns a plain Python ``float``. Calibration errors and accuracy
are fractions in ``[0, 1]``; use :func:`as_percent` to print the ``x100`` numbers papers report.

Conventions (see ``docs/metrics.md`` for the full story):

* **Logits or probabilities.** ``from_logits=None`` (the default) detects the input: if every value lies in ``[0, 1]``
  and every row sums to 1 within ``max(1e-3, C * eps(dtype))``, the rows are taken as probabilities; anything else is
  soft-maxed. ``from_logits=True`` always soft-maxes; ``from_logits=False`` requires valid probability rows and raises
  a ``ValueError`` otherwise.
* **Top-label.** ``confidence_i = max_c p_ic``, ``prediction_i = argmax_c p_ic``,
  ``correct_i = [prediction_i == y_i]``. The arg-max is taken on the input as given (logits or probabilities), first
  index on exact ties, so rounding in the softmax never creates a tie the logits did not have.
* **Equal-width bins** with edges ``e_b = b / M`` (``np.linspace(0, 1, M + 1)``). Bin ``b`` is ``[e_b, e_{b+1})``
  for ``b < M - 1`` and the last bin is closed, ``[e_{M-1}, 1]``: a confidence of exactly 1.0 falls in the last bin
  and 0.0 in the first.
* **Equal-mass (adaptive) bins** use the ``M + 1`` linear-interpolation quantiles of the confidences as edges (what
  scikit-learn's ``KBinsDiscretizer(strategy="quantile")`` computes), merge edges closer than ``1e-8`` (ties, e.g.
  many saturated confidences of 1.0, collapse into one bin instead of leaving empty ones) and assign a value equal to
  an interior edge to the bin above it. The result does not depend on the order of the samples.
* All arithmetic is in float64, whatever the input dtype, so half-precision inputs only lose what their own rounding
  lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "REPORT_KEYS",
    "ReliabilityTable",
    "TopLabelStats",
    "accuracy",
    "adaptive_calibration_error",
    "as_percent",
    "average_calibration_error",
    "brier_score",
    "calibration_report",
    "classwise_calibration_error",
    "expected_calibration_error",
    "knn_proximity",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "piece",
    "reliability_table",
    "top_label_stats",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]
Norm = Literal["l1", "l2", "max"]
MCEVariant = Literal["standard", "weighted"]
EdgeRule = Literal["standard", "lab"]
Strategy = Literal["uniform", "adaptive"]

_NORMS = ("l1", "l2", "max")
_MCE_VARIANTS = ("standard", "weighted")
_EDGE_RULES = ("standard", "lab")
_STRATEGIES = ("uniform", "adaptive")
# scikit-learn's KBinsDiscretizer drops quantile edges closer than this; we merge tied edges the same way.
_EDGE_MERGE_TOL = 1e-8
REPORT_KEYS = ("accuracy", "ece", "mce", "ace", "nll", "brier")


# --------------------------------------------------------------------------------------------------------------------
# argument checks and input conversion
# --------------------------------------------------------------------------------------------------------------------


def _check_n_bins(n_bins: Any, name: str = "n_bins") -> int:
    # bool is an int subclass; n_bins=True is almost certainly a bug, not "one bin".
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {n_bins!r}.")
    return int(n_bins)


def _check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def _check_from_logits(from_logits: Any) -> bool | None:
    if from_logits is not None and not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"`from_logits` must be True, False or None (detect), got {from_logits!r}.")
    return None if from_logits is None else bool(from_logits)


def _to_numpy(x: ArrayLike, name: str) -> tuple[np.ndarray, float]:
    """Returns ``x`` as a NumPy array (float64 when floating) and the machine epsilon of its original dtype."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():
            eps = torch.finfo(x.dtype).eps
            # bfloat16 has no NumPy dtype, so upcast on the tensor side; float64 keeps every input exactly.
            return x.to(device="cpu", dtype=torch.float64).numpy(), eps
        return x.cpu().numpy(), 0.0
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"`{name}` could not be converted to an array: {err}") from err
    if arr.dtype == object:
        raise ValueError(f"`{name}` must be a numeric array, got an object array (ragged rows?).")
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64, copy=False), float(np.finfo(arr.dtype).eps)
    return arr, 0.0


def _as_labels(labels: ArrayLike, n_samples: int, n_classes: int | None, name: str = "labels") -> np.ndarray:
    y, _ = _to_numpy(labels, name)
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D of shape (N,), got shape {tuple(y.shape)}.")
    if y.shape[0] != n_samples:
        raise ValueError(f"`{name}` has {y.shape[0]} entries but `preds` has {n_samples} rows.")
    if y.dtype == np.bool_:
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"`{name}` must hold integer class indices, got non-integer values.")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`{name}` must hold integer class indices, got dtype {y.dtype}.")
    y = y.astype(np.int64, copy=False)
    if y.size and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise ValueError(
            f"`{name}` must lie in [0, {n_classes}) for {n_classes} classes, got {bad}."
            if n_classes is not None
            else f"`{name}` must be non-negative, got {bad}."
        )
    return y


def _as_preds(preds: ArrayLike, name: str = "preds") -> tuple[torch.Tensor, float, float, float]:
    """Validated ``(N, C)`` float64 CPU tensor, the epsilon of the input dtype and the global min and max.

    NumPy float64 inputs are wrapped without a copy; nothing below modifies the tensor in place.
    """
    if isinstance(preds, torch.Tensor):
        t = preds.detach()
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"`{name}` must be a real numeric tensor, got dtype {t.dtype}.")
        eps = torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0
        shape = tuple(t.shape)
    else:
        arr, eps = _to_numpy(preds, name)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}.")
        shape = arr.shape
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be 2-D of shape (N, C) with logits or probabilities, got shape {shape}.")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one sample and one class, got shape {shape}.")
    if isinstance(preds, torch.Tensor):
        t = t.to(device="cpu", dtype=torch.float64)
    else:
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    lo, hi = (float(v) for v in torch.aminmax(t))  # one pass; NaN propagates into both
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"`{name}` contains NaN.")
    # -inf is a legitimate logit (a masked class); +inf is not, and softmax would turn it into NaN.
    if hi == math.inf:
        raise ValueError(f"`{name}` contains +inf.")
    return t, eps, lo, hi


def _prob_tolerance(n_classes: int, eps: float) -> float:
    # Half-precision softmax rows drift from 1 by up to about C * eps; float32/64 rows by far less than 1e-3.
    return max(1e-3, n_classes * eps)


def _probability_rows(x: torch.Tensor, eps: float, lo: float, hi: float) -> tuple[bool, str]:
    if lo < 0.0 or hi > 1.0:
        return False, "it has values outside [0, 1]"
    sums = x.sum(dim=1)
    deviation = (sums - 1.0).abs()
    worst = int(deviation.argmax())
    if float(deviation[worst]) > _prob_tolerance(x.shape[1], eps):
        return False, f"row {worst} sums to {float(sums[worst]):.6g}"
    return True, ""


def _resolve_preds(preds: ArrayLike, from_logits: bool | None, name: str = "preds") -> tuple[torch.Tensor, bool]:
    """Validated float64 ``(N, C)`` tensor and whether it holds probabilities (see the module docstring's rule)."""
    from_logits = _check_from_logits(from_logits)
    x, eps, lo, hi = _as_preds(preds, name)
    if from_logits:
        return x, False
    is_probs, why = _probability_rows(x, eps, lo, hi)
    if from_logits is False and not is_probs:
        raise ValueError(
            f"`{name}` was declared as probabilities (from_logits=False) but {why}; rows must lie in [0, 1] and sum "
            f"to 1 within {_prob_tolerance(x.shape[1], eps):.3g}. Pass from_logits=True for logits."
        )
    return x, is_probs


def _check_logit_rows(row_max: torch.Tensor, name: str) -> None:
    if torch.isneginf(row_max).any():
        raise ValueError(f"`{name}` has a row whose logits are all -inf.")


def _probabilities(x: torch.Tensor, is_probs: bool, name: str = "preds") -> torch.Tensor:
    """Full ``(N, C)`` probabilities (only the metrics that look beyond the top label need them)."""
    if is_probs:
        return x
    _check_logit_rows(x.amax(dim=1), name)
    return torch.softmax(x, dim=1)


def _log_probabilities(x: torch.Tensor, is_probs: bool, name: str = "preds") -> torch.Tensor:
    if is_probs:
        # log(0) = -inf would make the NLL infinite: clip at float64 eps, as scikit-learn's log_loss does.
        return torch.log(x.clamp_min(_LOG_EPS))
    _check_logit_rows(x.amax(dim=1), name)
    return torch.log_softmax(x, dim=1)


_LOG_EPS = float(np.finfo(np.float64).eps)


class TopLabelStats(NamedTuple):
    """Per-sample quantities every top-label metric is computed from (all float64 arrays of shape ``(N,)``).

    They are what :class:`~peft_dor.metrics.CalibrationAccumulator` stores and gathers across ranks, so distributed
    evaluation bins the raw values of the whole set instead of averaging per-rank metrics.
    """

    confidence: np.ndarray
    correct: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


def _stats(x: torch.Tensor, is_probs: bool, y: np.ndarray, name: str = "preds") -> TopLabelStats:
    # A handful of passes over (N, C) and a single (N, C) temporary: no probability or log-probability matrix, no
    # one-hot matrix. Brier uses sum_c (p_c - 1[c = y])^2 = sum_c p_c^2 - 2 p_y + 1.
    target = torch.from_numpy(y)[:, None]
    if is_probs:
        conf, pred = x.max(dim=1)
        p_y = x.gather(1, target).squeeze(1)
        nll = -torch.log(p_y.clamp_min(_LOG_EPS))
        sum_sq = torch.einsum("ij,ij->i", x, x)
    else:
        row_max, pred = x.max(dim=1)
        _check_logit_rows(row_max, name)
        e = (x - row_max[:, None]).exp_()  # the arg-max entry is exp(0) = 1 ...
        s = e.sum(dim=1)
        conf = s.reciprocal()  # ... so the top probability is 1 / sum, exactly as softmax computes it
        p_y = e.gather(1, target).squeeze(1) / s
        nll = torch.log(s) - (x.gather(1, target).squeeze(1) - row_max)  # -log_softmax(x)[y], without the matrix
        sum_sq = torch.einsum("ij,ij->i", e, e) / (s * s)
    brier = (sum_sq - 2.0 * p_y + 1.0).clamp_min(0.0)
    correct = (pred == target.squeeze(1)).to(torch.float64)
    return TopLabelStats(conf.numpy(), correct.numpy(), nll.numpy(), brier.numpy())


def top_label_stats(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> TopLabelStats:
    """Per-sample confidence, correctness, NLL and Brier terms.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect (see module docstring).

    Returns:
        A :class:`TopLabelStats` of four float64 arrays of shape ``(N,)``.

    Example:
        >>> stats = top_label_stats([[2.0, 0.0], [0.0, 1.0]], [0, 0])
        >>> stats.correct.tolist()
        [1.0, 0.0]
    """
    x, is_probs = _resolve_preds(preds, from_logits)
    y = _as_labels(labels, *x.shape)
    return _stats(x, is_probs, y)


# --------------------------------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------------------------------


def _uniform_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def _uniform_bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    # searchsorted against the same linspace edges torchmetrics/NumPy use, so exact-edge values agree with them;
    # the clip closes the last bin so that 1.0 is counted in it.
    idx = np.searchsorted(_uniform_edges(n_bins), values, side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def _quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    # b / M rather than linspace: 3 / 5 is 0.6 but linspace(0, 1, 6)[3] is 0.6000000000000001, and that last ulp
    # moves an edge off a sample it should sit on (scikit-learn's percentiles of linspace(0, 100, M + 1) agree with b/M).
    edges = np.quantile(values, np.arange(n_bins + 1) / n_bins)
    keep = np.diff(edges, prepend=-np.inf) > _EDGE_MERGE_TOL
    return edges[keep]


def _quantile_bin_index(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = _quantile_edges(values, n_bins)
    if edges.size < 2:  # every value identical: one bin [v, v]
        edges = np.array([edges[0], edges[0]])
    return np.searchsorted(edges[1:-1], values, side="right"), edges


class _Bins(NamedTuple):
    counts: np.ndarray  # float64 (for division); exact integers
    conf_sum: np.ndarray
    acc_sum: np.ndarray


def _bin_sums(idx: np.ndarray, conf: np.ndarray, correct: np.ndarray, n_bins: int) -> _Bins:
    return _Bins(
        np.bincount(idx, minlength=n_bins).astype(np.float64),
        np.bincount(idx, weights=conf, minlength=n_bins),
        np.bincount(idx, weights=correct, minlength=n_bins),
    )


def _reduce(bins: _Bins, n: int, norm: str, weighted_max: bool = False) -> float:
    nonempty = bins.counts > 0
    counts = bins.counts[nonempty]
    # (acc_sum - conf_sum) / count is acc_b - conf_b; dividing by n instead gives (n_b / N) |acc_b - conf_b| directly.
    diff = bins.acc_sum[nonempty] - bins.conf_sum[nonempty]
    if norm == "l1":
        value = np.abs(diff).sum() / n
    elif norm == "l2":
        value = math.sqrt(float((diff**2 / counts).sum() / n))
    elif weighted_max:
        value = np.abs(diff).max() / n
    else:
        value = (np.abs(diff) / counts).max()
    return float(min(max(value, 0.0), 1.0))


def _uniform_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str, edge_rule: str = "standard") -> float:
    if edge_rule == "lab":
        return _lab_ce(conf, correct, n_bins, norm)
    idx = _uniform_bin_index(conf, n_bins)
    return _reduce(_bin_sums(idx, conf, correct, n_bins), conf.shape[0], norm)


def _lab_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str) -> float:
    """ECE exactly as the DOR authors' lab code computes it (``np.digitize`` means, ``np.histogram`` weights).

    Per-bin means use left-closed bins only, so a confidence of exactly 1.0 is left out of them; the histogram weights
    close the last bin and do count it. A last bin holding only 1.0s therefore contributes nothing.
    """
    n = conf.shape[0]
    idx = np.searchsorted(_uniform_edges(n_bins), conf, side="right") - 1  # == np.digitize(conf, edges) - 1
    inside = idx < n_bins
    bins = _bin_sums(idx[inside], conf[inside], correct[inside], n_bins)
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


def _adaptive_ce(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: str = "l1") -> float:
    idx, edges = _quantile_bin_index(conf, n_bins)
    return _reduce(_bin_sums(idx, conf, correct, edges.size - 1), conf.shape[0], norm)


def _weighted_mce(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    idx = _uniform_bin_index(conf, n_bins)
    return _reduce(_bin_sums(idx, conf, correct, n_bins), conf.shape[0], "max", weighted_max=True)


# --------------------------------------------------------------------------------------------------------------------
# public metrics
# --------------------------------------------------------------------------------------------------------------------


def _top_label(preds: ArrayLike, labels: ArrayLike, from_logits: bool | None) -> tuple[np.ndarray, np.ndarray]:
    stats = top_label_stats(preds, labels, from_logits=from_logits)
    return stats.confidence, stats.correct


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
    n_bins = _check_n_bins(n_bins)
    norm = _check_choice(norm, _NORMS, "norm")
    edge_rule = _check_choice(edge_rule, _EDGE_RULES, "edge_rule")
    conf, correct = _top_label(preds, labels, from_logits)
    return _uniform_ce(conf, correct, n_bins, norm, edge_rule)


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
    n_bins = _check_n_bins(n_bins)
    variant = _check_choice(variant, _MCE_VARIANTS, "variant")
    conf, correct = _top_label(preds, labels, from_logits)
    if variant == "weighted":
        return _weighted_mce(conf, correct, n_bins)
    return _uniform_ce(conf, correct, n_bins, "max")


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
    n_bins = _check_n_bins(n_bins)
    conf, correct = _top_label(preds, labels, from_logits)
    return _adaptive_ce(conf, correct, n_bins)


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
    n_bins = _check_n_bins(n_bins)
    conf, correct = _top_label(preds, labels, from_logits)
    bins = _bin_sums(_uniform_bin_index(conf, n_bins), conf, correct, n_bins)
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
    n_bins = _check_n_bins(n_bins)
    norm = _check_choice(norm, _NORMS, "norm")
    x, is_probs = _resolve_preds(preds, from_logits)
    n, n_classes = x.shape
    y = _as_labels(labels, n, n_classes)
    probs = _probabilities(x, is_probs).numpy()
    hits = np.zeros_like(probs)
    hits[np.arange(n), y] = 1.0
    # One bincount over (class, bin) cells instead of a loop over classes.
    cell = np.arange(n_classes) * n_bins + _uniform_bin_index(probs, n_bins)
    size = n_classes * n_bins
    counts = np.bincount(cell.ravel(), minlength=size).reshape(n_classes, n_bins).astype(np.float64)
    conf_sum = np.bincount(cell.ravel(), weights=probs.ravel(), minlength=size).reshape(n_classes, n_bins)
    acc_sum = np.bincount(cell.ravel(), weights=hits.ravel(), minlength=size).reshape(n_classes, n_bins)
    per_class = [_reduce(_Bins(counts[c], conf_sum[c], acc_sum[c]), n, norm) for c in range(n_classes)]
    return float(np.mean(per_class))


def piece(
    preds: ArrayLike,
    labels: ArrayLike,
    proximity: ArrayLike,
    n_bins: int = 15,
    n_proximity_bins: int = 10,
    *,
    from_logits: bool | None = None,
) -> float:
    """Proximity-informed ECE (PIECE, Xiong et al., 2023): ECE over joint (proximity, confidence) cells.

    Samples are binned by proximity into ``n_proximity_bins`` equal-mass (quantile) bins, with the same tie rule as
    :func:`adaptive_calibration_error`, and by confidence into ``n_bins`` equal-width bins as in
    :func:`expected_calibration_error`; then ``PIECE = sum_cells |cell|/N * |acc_cell - conf_cell|``. PIECE is
    always >= ECE on the same confidence bins. The DOR authors use 10 x 10 cells.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        proximity: Per-sample proximity to the training distribution, shape ``(N,)``, e.g. from
            :func:`knn_proximity`. Only its order matters (quantile bins).
        n_bins: Number of equal-width confidence bins (>= 1).
        n_proximity_bins: Number of quantile bins of proximity (>= 1).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A Python float in ``[0, 1]``.

    Example:
        >>> probs = [[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]]
        >>> round(piece(probs, [0, 1, 1, 0], proximity=[0.1, 0.9, 0.2, 0.8], n_bins=5, n_proximity_bins=2), 4)
        0.375
    """
    n_bins = _check_n_bins(n_bins)
    n_proximity_bins = _check_n_bins(n_proximity_bins, "n_proximity_bins")
    conf, correct = _top_label(preds, labels, from_logits)
    prox, _ = _to_numpy(proximity, "proximity")
    if prox.ndim != 1 or prox.shape[0] != conf.shape[0]:
        raise ValueError(f"`proximity` must have shape ({conf.shape[0]},), got {tuple(prox.shape)}.")
    prox = prox.astype(np.float64)
    if not np.all(np.isfinite(prox)):
        raise ValueError("`proximity` must be finite.")
    prox_idx, prox_edges = _quantile_bin_index(prox, n_proximity_bins)
    cell = prox_idx * n_bins + _uniform_bin_index(conf, n_bins)
    n_cells = (prox_edges.size - 1) * n_bins
    return _reduce(_bin_sums(cell, conf, correct, n_cells), conf.shape[0], "l1")


def knn_proximity(
    features: ArrayLike,
    reference_features: ArrayLike,
    k: int = 5,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    chunk_size: int = 4096,
) -> np.ndarray:
    """Proximity of each sample to a reference set: ``exp(-mean distance to its k nearest reference features)``.

    The DOR authors use zero-shot CLIP image features of the base-class validation images as the reference, Euclidean
    distance and ``k = 5`` (``k = 10`` for ImageNet). Which encoder produces ``features`` is the caller's choice;
    cache the result keyed on the full run configuration.

    Args:
        features: Test features of shape ``(N, D)``.
        reference_features: Reference features of shape ``(R, D)`` with ``R >= k``.
        k: Number of nearest neighbours (>= 1).
        metric: ``"euclidean"`` or ``"cosine"`` (``1 - cosine similarity``).
        chunk_size: Rows of ``features`` processed at once, bounding memory to ``chunk_size * R`` distances.

    Returns:
        Float64 array of shape ``(N,)`` with values in ``(0, 1]``.

    Example:
        >>> prox = knn_proximity([[0.0, 0.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 1.0]], k=1)
        >>> prox.round(4).tolist()
        [1.0, 0.0144]
    """
    k = _check_n_bins(k, "k")
    metric = _check_choice(metric, ("euclidean", "cosine"), "metric")
    feats = torch.as_tensor(_to_numpy(features, "features")[0], dtype=torch.float64)
    refs = torch.as_tensor(_to_numpy(reference_features, "reference_features")[0], dtype=torch.float64)
    if feats.ndim != 2 or refs.ndim != 2 or feats.shape[1] != refs.shape[1]:
        raise ValueError(
            f"`features` (N, D) and `reference_features` (R, D) must be 2-D with the same D, got {tuple(feats.shape)} "
            f"and {tuple(refs.shape)}."
        )
    if refs.shape[0] < k:
        raise ValueError(f"`k` ({k}) exceeds the number of reference features ({refs.shape[0]}).")
    if metric == "cosine":
        feats = torch.nn.functional.normalize(feats, dim=1)
        refs = torch.nn.functional.normalize(refs, dim=1)
    out = []
    for start in range(0, feats.shape[0], chunk_size):
        block = feats[start : start + chunk_size]
        dist = torch.cdist(block, refs) if metric == "euclidean" else 1.0 - block @ refs.T
        out.append(dist.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.exp(-torch.cat(out)).numpy() if out else np.zeros(0)


def negative_log_likelihood(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> float:
    """Mean negative log-likelihood of the true class, ``-(1/N) sum_i log p_{i, y_i}``.

    Logits go through a float64 log-softmax (no ``log(softmax(x))`` underflow). Probabilities are clipped below at
    float64 ``eps`` as in scikit-learn's ``log_loss``, so a zero probability for the true class costs 36.04 nats
    rather than infinity.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        The NLL in nats, a Python float >= 0.

    Example:
        >>> round(negative_log_likelihood([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 4)
        0.3993
    """
    return float(top_label_stats(preds, labels, from_logits=from_logits).nll.mean())


def brier_score(
    preds: ArrayLike, labels: ArrayLike, *, normalize: bool = False, from_logits: bool | None = None
) -> float:
    """Multiclass Brier score ``(1/N) sum_i sum_c (p_ic - 1[y_i = c])^2`` (Brier, 1950).

    The sum over classes ranges over ``[0, 2]``. Some libraries divide by the number of classes ``C``
    (``normalize=True`` does that); compare like with like.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        normalize: Divide by the number of classes.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A Python float in ``[0, 2]`` (``[0, 2 / C]`` when normalised).

    Example:
        >>> round(brier_score([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 4)
        0.26
    """
    x, is_probs = _resolve_preds(preds, from_logits)
    y = _as_labels(labels, *x.shape)
    score = float(_stats(x, is_probs, y).brier.mean())
    return score / x.shape[1] if normalize else score


def accuracy(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> float:
    """Top-1 accuracy, the fraction of samples whose arg-max class is the label.

    Ties in ``preds`` go to the lowest class index (NumPy's ``argmax``).

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: Accepted for symmetry; the arg-max does not depend on it.

    Returns:
        A Python float in ``[0, 1]``.

    Example:
        >>> accuracy([[0.5, 0.4], [0.1, 0.9]], [0, 0])
        0.5
    """
    return float(top_label_stats(preds, labels, from_logits=from_logits).correct.mean())


def _report_from_stats(
    stats: TopLabelStats,
    n_bins: int,
    mce_variant: str = "standard",
    edge_rule: str = "standard",
    extras: bool = False,
) -> dict[str, float]:
    conf, correct = stats.confidence, stats.correct
    if conf.shape[0] == 0:
        raise ValueError("No samples to compute calibration metrics on (`preds` is empty).")
    idx = _uniform_bin_index(conf, n_bins)
    bins = _bin_sums(idx, conf, correct, n_bins)
    n = conf.shape[0]
    if edge_rule == "lab":
        ece = _lab_ce(conf, correct, n_bins, "l1")
    else:
        ece = _reduce(bins, n, "l1")
    report = {
        "accuracy": float(correct.mean()),
        "ece": ece,
        "mce": _reduce(bins, n, "max", weighted_max=mce_variant == "weighted"),
        "ace": _adaptive_ce(conf, correct, n_bins),
        "nll": float(stats.nll.mean()),
        "brier": float(stats.brier.mean()),
    }
    if extras:
        report["rmsce"] = _lab_ce(conf, correct, n_bins, "l2") if edge_rule == "lab" else _reduce(bins, n, "l2")
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
    n_bins = _check_n_bins(n_bins)
    mce_variant = _check_choice(mce_variant, _MCE_VARIANTS, "mce_variant")
    edge_rule = _check_choice(edge_rule, _EDGE_RULES, "edge_rule")
    stats = top_label_stats(preds, labels, from_logits=from_logits)
    return _report_from_stats(stats, n_bins, mce_variant, edge_rule, extras)


# --------------------------------------------------------------------------------------------------------------------
# reliability diagram data
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityTable:
    """The per-bin numbers behind a reliability diagram.

    Attributes:
        edges: Bin edges, shape ``(B + 1,)``.
        counts: Samples per bin, int64, shape ``(B,)``.
        confidence: Mean confidence per bin, ``NaN`` for empty bins.
        accuracy: Accuracy per bin, ``NaN`` for empty bins.
        strategy: ``"uniform"`` (equal width) or ``"adaptive"`` (equal mass).
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    strategy: str = "uniform"

    @property
    def n_bins(self) -> int:
        """Number of bins ``B`` (for adaptive bins, after merging tied edges)."""
        return int(self.counts.shape[0])

    @property
    def n_samples(self) -> int:
        """Total number of samples ``N``."""
        return int(self.counts.sum())

    @property
    def weights(self) -> np.ndarray:
        """Fraction of samples per bin, ``counts / N``."""
        return self.counts / max(self.n_samples, 1)

    @property
    def gap(self) -> np.ndarray:
        """``accuracy - confidence`` per bin (negative means over-confident), ``NaN`` for empty bins."""
        return self.accuracy - self.confidence

    @property
    def ece(self) -> float:
        """The ECE of this table, ``sum_b weights_b * |gap_b|``."""
        return float(np.nansum(self.weights * np.abs(self.gap)))

    @property
    def mce(self) -> float:
        """The standard (unweighted) MCE of this table."""
        return float(np.nanmax(np.abs(self.gap)))

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists, e.g. for JSON."""
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "confidence": self.confidence.tolist(),
            "accuracy": self.accuracy.tolist(),
        }

    def plot(self, **kwargs: Any) -> Figure:
        """Draws this table with :func:`peft_dor.metrics.plot_reliability_diagram` (needs matplotlib)."""
        from .plots import plot_reliability_diagram

        return plot_reliability_diagram(self, **kwargs)


def reliability_table(
    preds: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    *,
    strategy: Strategy = "uniform",
    from_logits: bool | None = None,
) -> ReliabilityTable:
    """Per-bin count, mean confidence and accuracy: the data behind a reliability diagram.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of bins (>= 1).
        strategy: ``"uniform"`` (equal-width bins, the ECE's) or ``"adaptive"`` (equal-mass bins, the adaptive ECE's).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A :class:`ReliabilityTable`; its ``ece`` property equals :func:`expected_calibration_error` (uniform) or
        :func:`adaptive_calibration_error` (adaptive).

    Example:
        >>> table = reliability_table([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]], [0, 1, 1, 0], n_bins=5)
        >>> table.counts.tolist()
        [0, 0, 0, 2, 2]
        >>> round(table.ece, 4)
        0.35
    """
    n_bins = _check_n_bins(n_bins)
    strategy = _check_choice(strategy, _STRATEGIES, "strategy")
    conf, correct = _top_label(preds, labels, from_logits)
    if strategy == "uniform":
        idx, edges = _uniform_bin_index(conf, n_bins), _uniform_edges(n_bins)
    else:
        idx, edges = _quantile_bin_index(conf, n_bins)
    bins = _bin_sums(idx, conf, correct, edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(bins.counts > 0, bins.conf_sum / bins.counts, np.nan)
        acc = np.where(bins.counts > 0, bins.acc_sum / bins.counts, np.nan)
    return ReliabilityTable(edges, bins.counts.astype(np.int64), mean_conf, acc, strategy)


# --------------------------------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------------------------------

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
