# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Proximity-informed calibration: k-NN proximity to a reference set and PIECE (Xiong et al., 2023)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .binning import bin_sums, quantile_bin_index, reduce_bins, uniform_bin_index
from .inputs import ArrayLike, check_choice, check_n_bins, to_numpy
from .top_label import top_label

__all__ = ["knn_proximity", "piece"]


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
    n_bins = check_n_bins(n_bins)
    n_proximity_bins = check_n_bins(n_proximity_bins, "n_proximity_bins")
    conf, correct = top_label(preds, labels, from_logits)
    prox, _ = to_numpy(proximity, "proximity")
    if prox.ndim != 1 or prox.shape[0] != conf.shape[0]:
        raise ValueError(f"`proximity` must have shape ({conf.shape[0]},), got {tuple(prox.shape)}.")
    prox = prox.astype(np.float64)
    if not np.all(np.isfinite(prox)):
        raise ValueError("`proximity` must be finite.")
    prox_idx, prox_edges = quantile_bin_index(prox, n_proximity_bins)
    cell = prox_idx * n_bins + uniform_bin_index(conf, n_bins)
    n_cells = (prox_edges.size - 1) * n_bins
    return reduce_bins(bin_sums(cell, conf, correct, n_cells), conf.shape[0], "l1")


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
    k = check_n_bins(k, "k")
    metric = check_choice(metric, ("euclidean", "cosine"), "metric")
    feats = torch.as_tensor(to_numpy(features, "features")[0], dtype=torch.float64)
    refs = torch.as_tensor(to_numpy(reference_features, "reference_features")[0], dtype=torch.float64)
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
