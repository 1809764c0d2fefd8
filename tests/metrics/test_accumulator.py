"""Tests for CalibrationAccumulator, including a real 2-process gloo run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from peft_dor.metrics import (
    CalibrationAccumulator,
    all_gather_concat,
    calibration_report,
    top_label_stats,
)


def _load_worker():
    # loaded by path so the test does not depend on pytest's import mode or on tests/ being a package
    spec = importlib.util.spec_from_file_location(
        "peft_dor_metrics_gloo_worker", Path(__file__).with_name("gloo_worker.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def test_batches_equal_one_call():
    logits, labels = worker.make_data()
    acc = CalibrationAccumulator(n_bins=worker.N_BINS, extras=True)
    for start in range(0, worker.N_SAMPLES, 96):
        acc.update(logits[start : start + 96], labels[start : start + 96])
    assert acc.n_samples == worker.N_SAMPLES
    expected = calibration_report(logits, labels, worker.N_BINS, extras=True)
    got = acc.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12)
    acc.reset()
    assert acc.n_samples == 0
    with pytest.raises(ValueError):
        acc.compute()


def test_options_are_forwarded():
    logits, labels = worker.make_data()
    acc = CalibrationAccumulator(n_bins=7, mce_variant="weighted", edge_rule="lab")
    acc.update(logits, labels)
    assert acc.compute() == calibration_report(logits, labels, 7, mce_variant="weighted", edge_rule="lab")
    assert "n_bins=7" in repr(acc)
    with pytest.raises(ValueError, match="`n_bins`"):
        CalibrationAccumulator(n_bins=0)
    with pytest.raises(ValueError, match="`mce_variant`"):
        CalibrationAccumulator(mce_variant="max")


def test_all_gather_concat_without_process_group():
    x = torch.arange(6).reshape(3, 2)
    assert torch.equal(all_gather_concat(x), x)


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    """2 CPU processes over gloo, uneven shards: every rank gets exactly the single-process numbers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    init_file = tmp_path / "init"
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(worker.__file__)), str(rank), "2", str(init_file), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    logits, labels = worker.make_data()
    expected = calibration_report(logits, labels, worker.N_BINS, extras=True)
    for result in results:
        assert result["gathered"]["n_samples"] == worker.N_SAMPLES
        for key in expected:
            assert result["gathered"][key] == pytest.approx(expected[key], abs=1e-12), key
        # rows arrive in rank order, rank 0's shard first
        np.testing.assert_allclose(result["gathered_confidence"], top_label_stats(logits, labels).confidence)
        # sync_dist=False keeps the rank-local value
        assert result["not_synced_ece"] == pytest.approx(result["local_ece"], abs=1e-12)
    # the wrong way, averaging per-rank ECEs, gives a different number: this is why raw values are gathered
    averaged = (results[0]["local_ece"] + results[1]["local_ece"]) / 2
    assert abs(averaged - expected["ece"]) > 1e-4
