# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Calibration metrics: a functional core, an ``evaluate`` metric, a Trainer hook, plots and temperature scaling.

Everything is computed over the *whole* evaluation set, never per batch and then averaged. Values are fractions in
``[0, 1]``; :func:`as_percent` gives the ``x100`` numbers papers print. ``docs/metrics.md`` has the definitions.

This package imports nothing else from ``peft_dor`` and imports neither ``evaluate`` nor ``matplotlib`` up front:
:class:`CalibrationMetric` (which needs ``evaluate``) is loaded on first access and plots import matplotlib when
drawn, so ``import peft_dor`` stays fast.

Example:
    >>> import torch
    >>> from peft_dor.metrics import calibration_report, expected_calibration_error
    >>> logits, labels = torch.randn(100, 5), torch.randint(0, 5, (100,))
    >>> 0.0 <= expected_calibration_error(logits, labels, n_bins=10) <= 1.0
    True
    >>> sorted(calibration_report(logits, labels))
    ['accuracy', 'ace', 'brier', 'ece', 'mce', 'nll']
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from .accumulator import CalibrationAccumulator, all_gather_concat
from .functional import (
    REPORT_KEYS,
    ReliabilityTable,
    TopLabelStats,
    accuracy,
    adaptive_calibration_error,
    as_percent,
    average_calibration_error,
    brier_score,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
    knn_proximity,
    maximum_calibration_error,
    negative_log_likelihood,
    piece,
    reliability_table,
    top_label_stats,
)
from .plots import plot_reliability_diagram
from .temperature import TemperatureScaler, apply_temperature, fit_temperature
from .trainer import calibration_compute_metrics

if TYPE_CHECKING:  # pragma: no cover
    from .evaluate_metric import CalibrationMetric

#: Folder of the bundled ``evaluate`` script module: ``evaluate.load(CALIBRATION_METRIC_PATH, keep_in_memory=True)``
#: works offline.
CALIBRATION_METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calibration_metric")

# Attributes whose modules import heavy optional dependencies; resolved on first access (PEP 562).
_LAZY = {"CalibrationMetric": ".evaluate_metric"}

__all__ = [
    "CALIBRATION_METRIC_PATH",
    "REPORT_KEYS",
    "CalibrationAccumulator",
    "CalibrationMetric",
    "ReliabilityTable",
    "TemperatureScaler",
    "TopLabelStats",
    "accuracy",
    "adaptive_calibration_error",
    "all_gather_concat",
    "apply_temperature",
    "as_percent",
    "average_calibration_error",
    "brier_score",
    "calibration_compute_metrics",
    "calibration_report",
    "classwise_calibration_error",
    "expected_calibration_error",
    "fit_temperature",
    "knn_proximity",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "piece",
    "plot_reliability_diagram",
    "reliability_table",
    "top_label_stats",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
