"""Tests for the evaluate integration: CalibrationMetric and the bundled script module, both offline."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from peft_dor.metrics import CALIBRATION_METRIC_PATH, CalibrationMetric, calibration_report  # noqa: E402

# Arrow stores the prediction rows as float32: results match the float64 core on the float32-rounded inputs exactly
# and the original float64 inputs to this tolerance.
_F32_ATOL = 1e-6


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    # evaluate reads its offline switch at import time; set the parsed value too
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True, raising=False)


def _assert_matches_core(result, logits, labels, **kwargs):
    expected = calibration_report(logits, labels, **kwargs)
    exact = calibration_report(np.asarray(logits, dtype=np.float32), labels, **kwargs)
    assert result.keys() == expected.keys()
    for key in expected:
        assert result[key] == pytest.approx(exact[key], abs=1e-12), key
        assert result[key] == pytest.approx(expected[key], abs=_F32_ATOL), key


def test_metric_class_batches_offline(offline, random_logits):
    logits, labels = random_logits(n=600, c=5, seed=0)
    metric = CalibrationMetric(n_bins=10)
    for start in range(0, 600, 128):
        metric.add_batch(predictions=logits[start : start + 128], references=labels[start : start + 128])
    _assert_matches_core(metric.compute(), logits.numpy(), labels.numpy(), n_bins=10)


def test_metric_class_defaults_and_compute_kwargs(offline, random_logits):
    logits, labels = random_logits(n=300, c=4, seed=1)
    metric = CalibrationMetric()
    assert metric.n_bins == 15
    # in memory by default: no Arrow cache file, no file lock to contend for under DDP
    assert metric.keep_in_memory is True
    result = metric.compute(predictions=logits.numpy(), references=labels.numpy())
    _assert_matches_core(result, logits.numpy(), labels.numpy(), n_bins=15)
    # options at construction and per call
    metric = CalibrationMetric(n_bins=7, mce_variant="weighted", extras=True)
    result = metric.compute(predictions=logits.numpy(), references=labels.numpy())
    _assert_matches_core(result, logits.numpy(), labels.numpy(), n_bins=7, mce_variant="weighted", extras=True)
    result = metric.compute(predictions=logits.numpy(), references=labels.numpy(), n_bins=12, extras=False)
    _assert_matches_core(result, logits.numpy(), labels.numpy(), n_bins=12, mce_variant="weighted")


def test_metric_class_single_adds_and_probabilities(offline):
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]])
    labels = np.array([0, 1, 1, 0])
    metric = CalibrationMetric(n_bins=5)
    for row, label in zip(probs, labels, strict=True):
        metric.add(predictions=row, references=label)
    result = metric.compute()
    assert result["ece"] == pytest.approx(0.35, abs=1e-6)
    assert result["accuracy"] == 0.75


def test_metric_class_rejects_bad_options(offline):
    with pytest.raises(ValueError, match="`n_bins`"):
        CalibrationMetric(n_bins=0)
    with pytest.raises(ValueError, match="`mce_variant`"):
        CalibrationMetric(mce_variant="largest")
    metric = CalibrationMetric()
    with pytest.raises(ValueError, match="`labels`"):
        metric.compute(predictions=[[0.2, 0.8], [0.6, 0.4]], references=[0, 5])


def test_combine(offline, random_logits):
    logits, labels = random_logits(n=200, c=3, seed=2)
    combined = evaluate.combine([CalibrationMetric(n_bins=10)])
    result = combined.compute(predictions=logits.numpy(), references=labels.numpy())
    _assert_matches_core(result, logits.numpy(), labels.numpy(), n_bins=10)


def test_evaluate_load_path_offline(offline, random_logits):
    assert os.path.isfile(os.path.join(CALIBRATION_METRIC_PATH, "calibration_metric.py"))
    metric = evaluate.load(CALIBRATION_METRIC_PATH, keep_in_memory=True, n_bins=10)
    assert isinstance(metric, CalibrationMetric)
    assert metric.n_bins == 10
    logits, labels = random_logits(n=400, c=6, seed=3)
    metric.add_batch(predictions=logits.numpy(), references=labels.numpy())
    _assert_matches_core(metric.compute(), logits.numpy(), labels.numpy(), n_bins=10)


def test_import_peft_dor_metrics_is_light():
    """`import peft_dor.metrics` must not pull in evaluate or matplotlib (seconds each), nor any other part of
    peft_dor (arrows point down). Checked in a fresh interpreter that loads only the metrics package: a bare
    `peft_dor` package object stands in for the top-level __init__, so anything else of peft_dor would fail to
    import rather than be silently present."""
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('peft_dor')\n"
        "pkg = types.ModuleType('peft_dor'); pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['peft_dor'] = pkg\n"
        "import peft_dor.metrics as m\n"
        "heavy = [name for name in ('evaluate', 'matplotlib', 'datasets', 'transformers') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
        "others = [n for n in sys.modules if n.startswith('peft_dor.') and not n.startswith('peft_dor.metrics')]\n"
        "assert not others, others\n"
        "assert 'CalibrationMetric' in dir(m) and 'CalibrationMetric' in m.__all__\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_lazy_attribute_resolves():
    import peft_dor.metrics as m

    assert m.CalibrationMetric is CalibrationMetric
    with pytest.raises(AttributeError):
        m.does_not_exist  # noqa: B018
