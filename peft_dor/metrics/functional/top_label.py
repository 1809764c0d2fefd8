# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Per-sample top-label quantities: confidence, correctness and the NLL and Brier terms.

``confidence_i = max_c p_ic``, ``prediction_i = argmax_c p_ic`` and ``correct_i = [prediction_i == y_i]``. The
arg-max is taken on the input as given (logits or probabilities), first index on exact ties, so rounding in the
softmax never creates a tie the logits did not have. All arithmetic is in float64, whatever the input dtype, so
half-precision inputs only lose what their own rounding lost.

The ``(N, C)`` input is processed in blocks of rows small enough to stay in the CPU cache: each block is upcast to
float64 and reduced to a few numbers per row right away, so no float64 copy, probability matrix or one-hot matrix of
the whole input is ever built. On millions of rows this is what makes the metrics as fast as torchmetrics' float32
ones; per row the arithmetic is exactly that of a whole-matrix float64 softmax.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .inputs import LOG_EPS, ArrayLike, as_labels, check_logit_rows, validated_preds

__all__ = ["TopLabelStats", "top_label", "top_label_columns", "top_label_stats"]

# Elements (rows x classes) per block: 2 MiB of float64, which stays in L2 while a handful of passes read it, and is
# large enough that per-block Python overhead and torch's intra-op threading stay negligible.
_BLOCK_ELEMENTS = 1 << 18


class TopLabelStats(NamedTuple):
    """Per-sample quantities every top-label metric is computed from (all float64 arrays of shape ``(N,)``).

    They are what :class:`~peft_dor.metrics.CalibrationAccumulator` stores and gathers across ranks, so distributed
    evaluation bins the raw values of the whole set instead of averaging per-rank metrics.
    """

    confidence: np.ndarray
    correct: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


def _block_stats(
    block: torch.Tensor, target: torch.Tensor, is_probs: bool, with_scores: bool, name: str
) -> tuple[torch.Tensor, ...]:
    """Confidence and correctness (and, with ``with_scores``, the NLL and Brier terms) of one float64 block."""
    # Brier uses sum_c (p_c - 1[c = y])^2 = sum_c p_c^2 - 2 p_y + 1, so no one-hot matrix is needed.
    if is_probs:
        conf, pred = block.max(dim=1)
        correct = pred == target
        if not with_scores:
            return conf, correct
        p_y = block.gather(1, target[:, None]).squeeze(1)
        nll = -torch.log(p_y.clamp_min(LOG_EPS))
        sum_sq = torch.einsum("ij,ij->i", block, block)
    else:
        row_max, pred = block.max(dim=1)
        check_logit_rows(row_max, name)
        e = (block - row_max[:, None]).exp_()  # the arg-max entry is exp(0) = 1 ...
        s = e.sum(dim=1)
        conf = s.reciprocal()  # ... so the top probability is 1 / sum, exactly as softmax computes it
        correct = pred == target
        if not with_scores:
            return conf, correct
        p_y = e.gather(1, target[:, None]).squeeze(1) / s
        nll = torch.log(s) - (block.gather(1, target[:, None]).squeeze(1) - row_max)  # -log_softmax(x)[y]
        sum_sq = torch.einsum("ij,ij->i", e, e) / (s * s)
    brier = (sum_sq - 2.0 * p_y + 1.0).clamp_min(0.0)
    return conf, correct, nll, brier


def top_label_columns(
    x: torch.Tensor, is_probs: bool, y: np.ndarray, *, with_scores: bool = True, name: str = "preds"
) -> list[np.ndarray]:
    """Confidence and correctness (and the NLL and Brier terms) of already validated inputs, block by block.

    Args:
        x: ``(N, C)`` CPU tensor from :func:`~peft_dor.metrics.functional.validated_preds` (any float dtype).
        is_probs: Whether ``x`` holds probabilities.
        y: Validated int64 labels of shape ``(N,)``.
        with_scores: Also compute the NLL and Brier terms.
        name: Argument name for error messages.

    Returns:
        Two (or four) float64 arrays of shape ``(N,)``, in :class:`TopLabelStats` order.
    """
    n, n_classes = x.shape
    rows = max(1, _BLOCK_ELEMENTS // n_classes)
    target = torch.from_numpy(y)
    columns = 4 if with_scores else 2
    out = torch.empty((columns, n), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = x[start:stop].to(torch.float64)  # a view when x is float64 already; never written to
        for column, values in zip(
            out, _block_stats(block, target[start:stop], is_probs, with_scores, name), strict=True
        ):
            column[start:stop] = values
    return list(out.numpy())


def top_label_stats(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> TopLabelStats:
    """Per-sample confidence, correctness, NLL and Brier terms.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect (see
            :func:`~peft_dor.metrics.expected_calibration_error`).

    Returns:
        A :class:`TopLabelStats` of four float64 arrays of shape ``(N,)``.

    Example:
        >>> stats = top_label_stats([[2.0, 0.0], [0.0, 1.0]], [0, 0])
        >>> stats.correct.tolist()
        [1.0, 0.0]
    """
    x, is_probs = validated_preds(preds, from_logits)
    y = as_labels(labels, *x.shape)
    return TopLabelStats(*top_label_columns(x, is_probs, y))


def top_label(preds: ArrayLike, labels: ArrayLike, from_logits: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample confidence and correctness only (float64 arrays of shape ``(N,)``), what binned metrics need.

    The same values as :func:`top_label_stats`' first two fields, without computing the NLL and Brier terms.
    """
    x, is_probs = validated_preds(preds, from_logits)
    y = as_labels(labels, *x.shape)
    conf, correct = top_label_columns(x, is_probs, y, with_scores=False)
    return conf, correct
