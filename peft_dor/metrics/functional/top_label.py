# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Per-sample top-label quantities: confidence, correctness and the NLL and Brier terms.

``confidence_i = max_c p_ic``, ``prediction_i = argmax_c p_ic`` and ``correct_i = [prediction_i == y_i]``. The
arg-max is taken on the input as given (logits or probabilities), first index on exact ties, so rounding in the
softmax never creates a tie the logits did not have. All arithmetic is in float64, whatever the input dtype, so
half-precision inputs only lose what their own rounding lost.

The ``(N, C)`` input is processed in blocks of rows: each block is upcast to float64 into one reused buffer and
reduced to a few numbers per row right away, so no float64 copy, probability matrix or one-hot matrix of the whole
input is ever built. On millions of rows this is what makes the metrics as fast as torchmetrics' float32
ones; per row the arithmetic is exactly that of a whole-matrix float64 softmax.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .inputs import LOG_EPS, ArrayLike, as_labels, check_logit_rows, validated_preds

__all__ = ["TopLabelStats", "top_label", "top_label_columns", "top_label_stats"]

# Elements (rows x classes) per block: 64 MiB of float64, reused from block to block. Large blocks keep the number of
# torch calls (each one an OpenMP parallel region, which stalls when other processes hold the cores) small; reusing one
# buffer with in-place ops keeps them from page-faulting fresh memory for every block.
_BLOCK_ELEMENTS = 1 << 23


class TopLabelStats(NamedTuple):
    """Per-sample quantities every top-label metric is computed from (all float64 arrays of shape ``(N,)``).

    They are what :class:`~peft_dor.metrics.CalibrationAccumulator` stores and gathers across ranks, so distributed
    evaluation bins the raw values of the whole set instead of averaging per-rank metrics.
    """

    confidence: np.ndarray
    correct: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


class _Buffers:
    """Scratch tensors for blocks of at most ``rows`` rows, allocated once per call."""

    def __init__(self, rows: int, n_classes: int) -> None:
        self.block = torch.empty((rows, n_classes), dtype=torch.float64)
        self.row_max = torch.empty(rows, dtype=torch.float64)
        self.pred = torch.empty(rows, dtype=torch.long)
        self.sum = torch.empty(rows, dtype=torch.float64)


def _block_stats(
    x: torch.Tensor, target: torch.Tensor, is_probs: bool, with_scores: bool, buffers: _Buffers, name: str
) -> tuple[torch.Tensor, ...]:
    """Confidence and correctness (and, with ``with_scores``, the NLL and Brier terms) of one block of rows."""
    k = x.shape[0]
    block, row_max, pred = buffers.block[:k], buffers.row_max[:k], buffers.pred[:k]
    block.copy_(x)  # the float64 upcast, exact
    torch.max(block, dim=1, out=(row_max, pred))
    correct = pred == target
    # Brier uses sum_c (p_c - 1[c = y])^2 = sum_c p_c^2 - 2 p_y + 1, so no one-hot matrix is needed.
    if is_probs:
        conf = row_max  # read before the next block overwrites the buffer
        if not with_scores:
            return conf, correct
        p_y = block.gather(1, target[:, None]).squeeze(1)
        nll = -torch.log(p_y.clamp_min(LOG_EPS))
        sum_sq = torch.einsum("ij,ij->i", block, block)
    else:
        check_logit_rows(row_max, name)
        x_y = block.gather(1, target[:, None]).squeeze(1) if with_scores else None
        e = block.sub_(row_max[:, None]).exp_()  # the arg-max entry is exp(0) = 1 ...
        s = torch.sum(e, dim=1, out=buffers.sum[:k])
        conf = s.reciprocal()  # ... so the top probability is 1 / sum, exactly as softmax computes it
        if not with_scores:
            return conf, correct
        p_y = e.gather(1, target[:, None]).squeeze(1) / s
        nll = torch.log(s) - (x_y - row_max)  # -log_softmax(x)[y], without the matrix
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
    rows = min(n, max(1, _BLOCK_ELEMENTS // n_classes))
    buffers = _Buffers(rows, n_classes)
    target = torch.from_numpy(y)
    out = torch.empty((4 if with_scores else 2, n), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        values = _block_stats(x[start:stop], target[start:stop], is_probs, with_scores, buffers, name)
        for column, value in zip(out, values, strict=True):
            column[start:stop] = value
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
