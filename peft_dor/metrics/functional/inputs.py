# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Argument checks and input conversion shared by every functional metric and by the wrappers around them.

``preds`` are logits or probabilities of shape ``(N, C)``, ``labels`` integer class indices of shape ``(N,)``; both
may be NumPy arrays, torch tensors (any float dtype, on any device) or nested lists. Every check raises a
``ValueError`` that names the argument and, where there is one, the fix.

**Logits or probabilities.** ``from_logits=None`` (the default) detects the input: if every value lies in ``[0, 1]``
and every row sums to 1 within ``max(1e-3, C * eps(dtype))``, the rows are taken as probabilities; anything else is
soft-maxed. ``from_logits=True`` always soft-maxes; ``from_logits=False`` requires valid probability rows and raises
otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "EDGE_RULES",
    "LOG_EPS",
    "MCE_VARIANTS",
    "NORMS",
    "STRATEGIES",
    "ArrayLike",
    "EdgeRule",
    "MCEVariant",
    "Norm",
    "Strategy",
    "as_labels",
    "check_choice",
    "check_from_logits",
    "check_logit_rows",
    "check_n_bins",
    "log_probabilities",
    "probabilities",
    "resolve_preds",
    "to_numpy",
    "validated_preds",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]
Norm = Literal["l1", "l2", "max"]
MCEVariant = Literal["standard", "weighted"]
EdgeRule = Literal["standard", "lab"]
Strategy = Literal["uniform", "adaptive"]

NORMS = ("l1", "l2", "max")
MCE_VARIANTS = ("standard", "weighted")
EDGE_RULES = ("standard", "lab")
STRATEGIES = ("uniform", "adaptive")
#: Probabilities are clipped below at float64 eps before a log, as scikit-learn's ``log_loss`` does.
LOG_EPS = float(np.finfo(np.float64).eps)


def check_n_bins(n_bins: Any, name: str = "n_bins") -> int:
    """``n_bins`` (or another count named ``name``) as an ``int >= 1``; raises ``ValueError`` otherwise."""
    # bool is an int subclass; n_bins=True is almost certainly a bug, not "one bin".
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {n_bins!r}.")
    return int(n_bins)


def check_choice(value: Any, choices: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``choices``; raises a ``ValueError`` listing them otherwise."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def check_from_logits(from_logits: Any) -> bool | None:
    """``from_logits`` as ``True``, ``False`` or ``None`` (detect); raises ``ValueError`` for anything else."""
    if from_logits is not None and not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"`from_logits` must be True, False or None (detect), got {from_logits!r}.")
    return None if from_logits is None else bool(from_logits)


def to_numpy(x: ArrayLike, name: str) -> tuple[np.ndarray, float]:
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


def as_labels(labels: ArrayLike, n_samples: int, n_classes: int | None, name: str = "labels") -> np.ndarray:
    """Validated int64 labels of shape ``(n_samples,)`` with values in ``[0, n_classes)``."""
    y, _ = to_numpy(labels, name)
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


def _as_preds(preds: ArrayLike, name: str) -> tuple[torch.Tensor, float, float, float]:
    """Validated ``(N, C)`` CPU tensor *in its own dtype*, the epsilon of that dtype and the global min and max.

    The float64 upcast is left to the consumer, which can do it block by block: a whole-matrix float64 copy of
    millions of rows costs more than the metric itself. Values upcast exactly, so the min and max taken here are the
    float64 ones. NumPy inputs are wrapped without a copy; nothing modifies the tensor in place.
    """
    if isinstance(preds, torch.Tensor):
        t = preds.detach()
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"`{name}` must be a real numeric tensor, got dtype {t.dtype}.")
        eps = torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0
    else:
        try:
            arr = np.asarray(preds)
        except Exception as err:  # ragged lists and the like
            raise ValueError(f"`{name}` could not be converted to an array: {err}") from err
        if arr.dtype == object:
            raise ValueError(f"`{name}` must be a numeric array, got an object array (ragged rows?).")
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}.")
        floating = np.issubdtype(arr.dtype, np.floating)
        eps = float(np.finfo(arr.dtype).eps) if floating else 0.0
        if arr.dtype not in (np.float16, np.float32, np.float64):  # e.g. integers or longdouble: torch needs a copy
            arr = arr.astype(np.float64)
        arr = np.ascontiguousarray(arr)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    shape = tuple(t.shape)
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be 2-D of shape (N, C) with logits or probabilities, got shape {shape}.")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one sample and one class, got shape {shape}.")
    t = t.to(device="cpu")
    if not t.is_floating_point():
        t = t.to(torch.float64)
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
    sums = x.sum(dim=1, dtype=torch.float64)
    deviation = (sums - 1.0).abs()
    worst = int(deviation.argmax())
    if float(deviation[worst]) > _prob_tolerance(x.shape[1], eps):
        return False, f"row {worst} sums to {float(sums[worst]):.6g}"
    return True, ""


def validated_preds(preds: ArrayLike, from_logits: bool | None, name: str = "preds") -> tuple[torch.Tensor, bool]:
    """Validated ``(N, C)`` CPU tensor in the input's own float dtype and whether it holds probabilities.

    The rule is in the module docstring. Consumers upcast to float64 themselves (block by block where they can);
    :func:`resolve_preds` is the same with the whole matrix upcast.
    """
    from_logits = check_from_logits(from_logits)
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


def resolve_preds(preds: ArrayLike, from_logits: bool | None, name: str = "preds") -> tuple[torch.Tensor, bool]:
    """Validated float64 ``(N, C)`` CPU tensor and whether it holds probabilities (see the module docstring)."""
    x, is_probs = validated_preds(preds, from_logits, name)
    return x.to(torch.float64), is_probs


def check_logit_rows(row_max: torch.Tensor, name: str = "preds") -> None:
    """Raises if a row of logits is all ``-inf`` (its softmax is undefined); ``row_max`` is the per-row maximum."""
    if torch.isneginf(row_max).any():
        raise ValueError(f"`{name}` has a row whose logits are all -inf.")


def probabilities(x: torch.Tensor, is_probs: bool, name: str = "preds") -> torch.Tensor:
    """Full ``(N, C)`` probabilities of a float64 tensor from :func:`resolve_preds`."""
    if is_probs:
        return x
    check_logit_rows(x.amax(dim=1), name)
    return torch.softmax(x, dim=1)


def log_probabilities(x: torch.Tensor, is_probs: bool, name: str = "preds") -> torch.Tensor:
    """Full ``(N, C)`` log-probabilities of a float64 tensor from :func:`resolve_preds`, floored at ``log(LOG_EPS)``
    for probability inputs."""
    if is_probs:
        # log(0) = -inf would make the NLL infinite: clip at float64 eps, as scikit-learn's log_loss does.
        return torch.log(x.clamp_min(LOG_EPS))
    check_logit_rows(x.amax(dim=1), name)
    return torch.log_softmax(x, dim=1)
