# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""The per-bin numbers behind a reliability diagram (counts, mean confidence, accuracy, edges)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .binning import bin_sums, quantile_bin_index, uniform_bin_index, uniform_edges
from .inputs import STRATEGIES, ArrayLike, Strategy, check_choice, check_n_bins
from .top_label import top_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ReliabilityTable", "reliability_table"]


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
        """Draws this table as :func:`peft_dor.metrics.plot_reliability_diagram` does (needs matplotlib).

        Args:
            **kwargs: The drawing options of :func:`~peft_dor.metrics.plot_reliability_diagram` (``title``, ``path``,
                ``ax``, ``show_histogram``, ``figsize``, ``dpi``).
        """
        # The drawing code lives in a leaf module that imports nothing of the metrics, so the table can draw itself
        # without the functional package importing `plots` (which imports the functional package).
        from ..drawing import draw_reliability_diagram

        return draw_reliability_diagram(self, **kwargs)


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
    n_bins = check_n_bins(n_bins)
    strategy = check_choice(strategy, STRATEGIES, "strategy")
    conf, correct = top_label(preds, labels, from_logits)
    if strategy == "uniform":
        idx, edges = uniform_bin_index(conf, n_bins), uniform_edges(n_bins)
    else:
        idx, edges = quantile_bin_index(conf, n_bins)
    bins = bin_sums(idx, conf, correct, edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(bins.counts > 0, bins.conf_sum / bins.counts, np.nan)
        acc = np.where(bins.counts > 0, bins.acc_sum / bins.counts, np.nan)
    return ReliabilityTable(edges, bins.counts.astype(np.int64), mean_conf, acc, strategy)
