# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Functional calibration metrics: pure functions of predictions and labels (torchmetrics' functional design).

Every metric takes ``preds`` (logits or probabilities, shape ``(N, C)``) and ``labels`` (integers, shape ``(N,)``)
as NumPy arrays, torch tensors (any float dtype, including ``float16`` and ``bfloat16``, on any device) or nested
lists, and returns a plain Python ``float``. Calibration errors and accuracy are fractions in ``[0, 1]``; use
:func:`as_percent` to print the ``x100`` numbers papers report. ``docs/metrics.md`` has the definitions.

One concept per module:

* ``inputs``: argument checks, input conversion and the logits-or-probabilities rule;
* ``top_label``: per-sample confidence, correctness, NLL and Brier terms;
* ``binning``: equal-width and equal-mass bins and per-bin sums;
* ``calibration_error``: ECE / RMSCE / MCE, adaptive ECE, average CE, classwise ECE;
* ``proximity``: k-NN proximity and PIECE;
* ``scores``: NLL, Brier score, accuracy;
* ``report``: every top-label metric in one call, and ``as_percent``;
* ``reliability``: the per-bin table behind a reliability diagram.

The stateful accumulator, the Trainer hook, the ``evaluate`` module and temperature scaling in
:mod:`peft_dor.metrics` are thin wrappers that import only the names below. This package imports nothing else of
``peft_dor`` at import time (``ReliabilityTable.plot`` loads the matplotlib drawing module when called).
"""

from .calibration_error import (
    adaptive_calibration_error,
    average_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
)
from .inputs import (
    EDGE_RULES,
    MCE_VARIANTS,
    NORMS,
    STRATEGIES,
    ArrayLike,
    EdgeRule,
    MCEVariant,
    Norm,
    Strategy,
    as_labels,
    check_choice,
    check_from_logits,
    check_n_bins,
    log_probabilities,
    probabilities,
    resolve_preds,
    validated_preds,
)
from .proximity import knn_proximity, piece
from .reliability import ReliabilityTable, reliability_table
from .report import REPORT_KEYS, as_percent, calibration_report, calibration_report_from_stats
from .scores import accuracy, brier_score, negative_log_likelihood
from .top_label import TopLabelStats, top_label_stats

__all__ = [
    # metrics
    "REPORT_KEYS",
    "ReliabilityTable",
    "TopLabelStats",
    "accuracy",
    "adaptive_calibration_error",
    "as_percent",
    "average_calibration_error",
    "brier_score",
    "calibration_report",
    "calibration_report_from_stats",
    "classwise_calibration_error",
    "expected_calibration_error",
    "knn_proximity",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "piece",
    "reliability_table",
    "top_label_stats",
    # building blocks for wrappers: argument checks and validated inputs
    "EDGE_RULES",
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
    "check_n_bins",
    "log_probabilities",
    "probabilities",
    "resolve_preds",
    "validated_preds",
]
