# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Calibration metrics (ECE, MCE, adaptive ECE, NLL, Brier, accuracy) as an `evaluate` script module.

Works offline: evaluate.load(peft_dor.metrics.CALIBRATION_METRIC_PATH, keep_in_memory=True). evaluate copies only
this file into its module cache, so the implementation is imported from the installed peft_dor package rather than
duplicated here; the result is the same class as peft_dor.metrics.CalibrationMetric.
"""

from peft_dor.metrics.evaluate_metric import CalibrationMetric

__all__ = ["CalibrationMetric"]
