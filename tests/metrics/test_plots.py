"""Tests for reliability diagrams, peft_dor.metrics.plots."""

from __future__ import annotations

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from peft_dor.metrics import plot_reliability_diagram, reliability_table  # noqa: E402


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_saves_png_and_svg(tmp_path, random_logits, suffix):
    logits, labels = random_logits(n=500)
    path = tmp_path / f"diagram{suffix}"
    fig = plot_reliability_diagram(logits, labels, n_bins=10, title="CoOp", path=path, dpi=60)
    assert isinstance(fig, Figure)
    assert path.stat().st_size > 2_000
    head = path.read_bytes()[:8]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<?xml" in path.read_bytes()[:100]
    diagram, histogram = fig.axes
    assert "ECE = " in diagram.get_title() and "CoOp" in diagram.get_title()
    assert histogram.get_xlabel() == "Confidence"


def test_title_reports_the_ece(random_logits):
    logits, labels = random_logits(n=400)
    table = reliability_table(logits, labels, n_bins=10)
    fig = plot_reliability_diagram(table)
    assert f"{100 * table.ece:.2f}%" in fig.axes[0].get_title()
    # the table's own plot() helper draws the same thing
    assert table.plot().axes[0].get_title() == fig.axes[0].get_title()


def test_adaptive_bins_and_no_histogram(random_logits):
    logits, labels = random_logits(n=400)
    fig = plot_reliability_diagram(logits, labels, n_bins=8, strategy="adaptive", show_histogram=False)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title().startswith("ACE = ")


def test_draws_into_given_axes(random_logits):
    logits, labels = random_logits(n=300)
    fig = Figure()
    ax_diag, ax_hist = fig.subplots(2, 1)
    assert plot_reliability_diagram(logits, labels, ax=(ax_diag, ax_hist)) is fig
    assert plot_reliability_diagram(logits, labels, ax=Figure().subplots(2, 1)) is not None  # a NumPy array of axes
    single = Figure().subplots()
    assert plot_reliability_diagram(logits, labels, ax=single) is single.get_figure()


def test_edge_cases_plot(tmp_path):
    # a single sample, saturated confidences, most bins empty
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4]])
    plot_reliability_diagram(probs, [0, 0, 0], n_bins=15, path=tmp_path / "edge.png", dpi=40)
    plot_reliability_diagram(probs[:1], [0], n_bins=1, path=tmp_path / "one.png", dpi=40)


def test_argument_errors(random_logits):
    logits, labels = random_logits(n=50)
    with pytest.raises(ValueError, match="`labels`"):
        plot_reliability_diagram(logits)
    with pytest.raises(ValueError, match="`labels`"):
        plot_reliability_diagram(reliability_table(logits, labels), labels)


def test_does_not_touch_pyplot(random_logits):
    # figures are built on an Agg canvas through the object API: no pyplot state, no backend switch
    had_pyplot = "matplotlib.pyplot" in sys.modules
    backend = matplotlib.get_backend() if had_pyplot else None
    logits, labels = random_logits(n=50)
    plot_reliability_diagram(logits, labels)
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    if had_pyplot:
        assert matplotlib.get_backend() == backend
