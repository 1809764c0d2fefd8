# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Bin assignment and per-bin sums, the part every binned calibration metric shares.

* **Equal-width bins** with edges ``e_b = b / M`` (``np.linspace(0, 1, M + 1)``). Bin ``b`` is ``[e_b, e_{b+1})``
  for ``b < M - 1`` and the last bin is closed, ``[e_{M-1}, 1]``: a confidence of exactly 1.0 falls in the last bin
  and 0.0 in the first.
* **Equal-mass (adaptive) bins** use the ``M + 1`` linear-interpolation quantiles of the values as edges (what
  scikit-learn's ``KBinsDiscretizer(strategy="quantile")`` computes), merge edges closer than ``1e-8`` (ties, e.g.
  many saturated confidences of 1.0, collapse into one bin instead of leaving empty ones) and assign a value equal to
  an interior edge to the bin above it. The result does not depend on the order of the samples.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "EDGE_MERGE_TOL",
    "Bins",
    "bin_sums",
    "quantile_bin_index",
    "quantile_edges",
    "reduce_bins",
    "uniform_bin_index",
    "uniform_edges",
]

#: scikit-learn's KBinsDiscretizer drops quantile edges closer than this; tied edges are merged the same way.
EDGE_MERGE_TOL = 1e-8


def uniform_edges(n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` equal-width edges on ``[0, 1]``."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def uniform_bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each value, with the last bin closed."""
    # searchsorted against the same linspace edges torchmetrics/NumPy use, so exact-edge values agree with them;
    # the clip closes the last bin so that 1.0 is counted in it.
    idx = np.searchsorted(uniform_edges(n_bins), values, side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """The equal-mass edges of ``values``, with tied edges merged."""
    # b / M rather than linspace: 3 / 5 is 0.6 but linspace(0, 1, 6)[3] is 0.6000000000000001, and that last ulp
    # moves an edge off a sample it should sit on (scikit-learn's percentiles of linspace(0, 100, M + 1) agree with b/M).
    edges = np.quantile(values, np.arange(n_bins + 1) / n_bins)
    keep = np.diff(edges, prepend=-np.inf) > EDGE_MERGE_TOL
    return edges[keep]


def quantile_bin_index(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-mass bin of each value and the edges (``B + 1`` of them, ``B <= n_bins`` after merging ties)."""
    edges = quantile_edges(values, n_bins)
    if edges.size < 2:  # every value identical: one bin [v, v]
        edges = np.array([edges[0], edges[0]])
    return np.searchsorted(edges[1:-1], values, side="right"), edges


class Bins(NamedTuple):
    """Per-bin sums: ``counts`` (float64 for division, exact integers), ``conf_sum`` and ``acc_sum``."""

    counts: np.ndarray
    conf_sum: np.ndarray
    acc_sum: np.ndarray


def bin_sums(idx: np.ndarray, conf: np.ndarray, correct: np.ndarray, n_bins: int) -> Bins:
    """Count, confidence sum and correct count of each of ``n_bins`` bins, given each sample's bin ``idx``."""
    return Bins(
        np.bincount(idx, minlength=n_bins).astype(np.float64),
        np.bincount(idx, weights=conf, minlength=n_bins),
        np.bincount(idx, weights=correct, minlength=n_bins),
    )


def reduce_bins(bins: Bins, n: int, norm: str, weighted_max: bool = False) -> float:
    """The ``"l1"``, ``"l2"`` or ``"max"`` calibration error of ``bins`` over ``n`` samples, clipped to ``[0, 1]``.

    ``weighted_max`` gives the count-weighted maximum ``max_b (n_b / N) |acc_b - conf_b|`` for ``norm="max"``.
    Empty bins contribute nothing.
    """
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
