# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Reliability diagrams from predictions or a precomputed table. matplotlib is imported only when a plot is drawn.

Figures are built with matplotlib's object API on an Agg canvas (no ``pyplot``), so plotting works headless, never
opens a window and never changes the caller's global backend. This module imports the functional metrics; they never
import it (the drawing itself is in :mod:`peft_dor.metrics.drawing`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .drawing import draw_reliability_diagram
from .functional import ArrayLike, ReliabilityTable, Strategy, reliability_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_reliability_diagram"]


def plot_reliability_diagram(
    preds: ArrayLike | ReliabilityTable,
    labels: ArrayLike | None = None,
    n_bins: int = 15,
    *,
    strategy: Strategy = "uniform",
    from_logits: bool | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    ax: Axes | tuple[Axes, Axes] | None = None,
    show_histogram: bool = True,
    figsize: tuple[float, float] = (4.8, 5.6),
    dpi: int = 150,
) -> Figure:
    """Draws a reliability diagram: per-bin accuracy against confidence, with the gap shaded.

    The top panel shows each bin's accuracy as a bar, the gap to the bin's mean confidence as a red hatched bar
    (above the accuracy bar when over-confident, below it when under-confident) and the diagonal of perfect
    calibration; the ECE is in the title. The bottom panel is the confidence histogram (fraction of samples per bin)
    with the overall accuracy and mean confidence marked; a large distance between the two lines is over- or
    under-confidence at a glance.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``, or a precomputed
            :class:`~peft_dor.metrics.ReliabilityTable` (then ``labels`` must be ``None``).
        labels: Integer class indices of shape ``(N,)``.
        n_bins: Number of bins.
        strategy: ``"uniform"`` (equal-width bins, as the ECE) or ``"adaptive"`` (equal-mass bins).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.
        title: Title prefix; the ECE and bin count are appended.
        path: Save the figure there; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).
        ax: Draw into this Axes (diagram only) or pair of Axes (diagram, histogram) instead of a new figure.
        show_histogram: Add the confidence histogram below the diagram (new figures only).
        figsize: Size in inches of a new figure.
        dpi: Resolution of a new figure and of a saved raster file.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> import torch
        >>> logits = 3 * torch.randn(1000, 10)
        >>> labels = torch.randint(0, 10, (1000,))
        >>> fig = plot_reliability_diagram(logits, labels, n_bins=10, title="CoOp")
        >>> fig.savefig("reliability.png")  # doctest: +SKIP
    """
    if isinstance(preds, ReliabilityTable):
        if labels is not None:
            raise ValueError("`labels` must be None when `preds` is a ReliabilityTable.")
        table = preds
    else:
        if labels is None:
            raise ValueError("`labels` is required unless `preds` is a ReliabilityTable.")
        table = reliability_table(preds, labels, n_bins, strategy=strategy, from_logits=from_logits)
    return draw_reliability_diagram(
        table, title=title, path=path, ax=ax, show_histogram=show_histogram, figsize=figsize, dpi=dpi
    )
