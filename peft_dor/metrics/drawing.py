# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Drawing a reliability table with matplotlib (imported only when a figure is drawn).

A leaf module: it reads a :class:`~peft_dor.metrics.ReliabilityTable`'s arrays and imports nothing of ``peft_dor``,
so both :func:`~peft_dor.metrics.plot_reliability_diagram` and ``ReliabilityTable.plot`` use it without an import
circle. Figures are built with matplotlib's object API on an Agg canvas (no ``pyplot``), so drawing works headless,
never opens a window and never changes the caller's global backend.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_reliability_diagram"]

_BAR = "#3b6ea8"  # accuracy bars
_GAP = "#d1495b"  # shaded miscalibration
_HIST = "#7f8c8d"


def draw_reliability_diagram(
    table: Any,
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    ax: Axes | tuple[Axes, Axes] | None = None,
    show_histogram: bool = True,
    figsize: tuple[float, float] = (4.8, 5.6),
    dpi: int = 150,
) -> Figure:
    """Draws ``table`` as a reliability diagram; the options are :func:`~peft_dor.metrics.plot_reliability_diagram`'s.

    Args:
        table: A :class:`~peft_dor.metrics.ReliabilityTable` (read through its attributes only, so this module needs
            no import of it).
        title: Title prefix; the ECE and bin count are appended.
        path: Save the figure there; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).
        ax: Draw into this Axes (diagram only) or pair of Axes (diagram, histogram) instead of a new figure.
        show_histogram: Add the confidence histogram below the diagram (new figures only).
        figsize: Size in inches of a new figure.
        dpi: Resolution of a new figure and of a saved raster file.

    Returns:
        The matplotlib ``Figure``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plot_reliability_diagram needs matplotlib: pip install matplotlib") from err

    if ax is None:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        if show_histogram:
            ax_diag, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        else:
            ax_diag, ax_hist = fig.subplots(), None
    elif isinstance(ax, (tuple, list, np.ndarray)):  # e.g. the array fig.subplots(2, 1) returns
        ax_diag, ax_hist = ax
        fig = ax_diag.get_figure()
    else:
        ax_diag, ax_hist = ax, None
        fig = ax_diag.get_figure()

    _draw_diagram(ax_diag, table, title)
    if ax_hist is not None:
        _draw_histogram(ax_hist, table)
    else:
        ax_diag.set_xlabel("Confidence")

    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
    return fig


def _draw_diagram(ax: Any, table: Any, title: str | None) -> None:
    left, widths = table.edges[:-1], np.diff(table.edges)
    full = table.counts > 0
    acc, conf = table.accuracy[full], table.confidence[full]

    ax.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=1.2, label="Perfect calibration", zorder=3)
    ax.bar(
        left[full], acc, width=widths[full], align="edge", color=_BAR, edgecolor="white", linewidth=0.8,
        label="Accuracy", zorder=1,
    )  # fmt: skip
    ax.bar(
        left[full], conf - acc, bottom=acc, width=widths[full], align="edge", color=_GAP, alpha=0.3, edgecolor=_GAP,
        hatch="//", linewidth=0.8, label="Gap to confidence", zorder=2,
    )  # fmt: skip
    # The mean confidence of each bin, where the gap bar ends: with equal-mass bins it is far from the bin centre.
    ax.scatter(left[full] + widths[full] / 2, conf, marker="_", s=120, color=_GAP, linewidths=2, zorder=4)

    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Accuracy")
    ax.grid(True, linestyle=":", linewidth=0.6, alpha=0.7, zorder=0)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", fontsize="small", frameon=True, framealpha=0.9)
    kind = "equal-mass" if table.strategy == "adaptive" else "equal-width"
    metric = "ACE" if table.strategy == "adaptive" else "ECE"
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}{metric} = {100 * table.ece:.2f}%  ({table.n_bins} {kind} bins, N = {table.n_samples:,})",
                 fontsize="medium")  # fmt: skip


def _draw_histogram(ax: Any, table: Any) -> None:
    left, widths = table.edges[:-1], np.diff(table.edges)
    ax.bar(left, table.weights, width=widths, align="edge", color=_HIST, edgecolor="white", linewidth=0.8)
    n = max(table.n_samples, 1)
    mean_acc = float(np.nansum(table.accuracy * table.counts) / n)
    mean_conf = float(np.nansum(table.confidence * table.counts) / n)
    ax.axvline(mean_acc, color=_BAR, linewidth=2, label=f"Accuracy {100 * mean_acc:.1f}%")
    ax.axvline(mean_conf, color=_GAP, linewidth=2, linestyle="--", label=f"Avg. confidence {100 * mean_conf:.1f}%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(float(table.weights.max()) * 1.15, 0.05))
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Fraction")
    ax.grid(True, axis="y", linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", fontsize="x-small", frameon=True, framealpha=0.9)
