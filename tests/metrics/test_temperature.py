"""Tests for temperature scaling, peft_dor.metrics.temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_dor.metrics import (
    TemperatureScaler,
    accuracy,
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)


def test_recovers_the_sharpening_factor(calibrated_logits):
    logits, labels = calibrated_logits(n=4000, seed=0)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    assert fit_temperature(3.0 * logits, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(0.5 * logits, labels) == pytest.approx(0.5, rel=0.05)


def test_lowers_nll_and_ece_on_overconfident_logits_and_keeps_accuracy(calibrated_logits):
    val_logits, val_labels = calibrated_logits(n=3000, seed=1)
    test_logits, test_labels = calibrated_logits(n=3000, seed=2)
    overconfident_val, overconfident_test = 4.0 * val_logits, 4.0 * test_logits

    temperature = fit_temperature(overconfident_val, val_labels)  # fitted on validation only
    assert temperature > 1.0
    calibrated = apply_temperature(overconfident_test, temperature)

    before = calibration_report(overconfident_test, test_labels, n_bins=15)
    after = calibration_report(calibrated, test_labels, n_bins=15)
    assert after["nll"] < before["nll"]
    assert after["ece"] < before["ece"] / 2
    assert after["accuracy"] == before["accuracy"]
    assert torch.equal(calibrated.argmax(1), overconfident_test.argmax(1))


def test_minimises_nll(calibrated_logits):
    logits, labels = calibrated_logits(n=2000, seed=3)
    logits = 2.5 * logits
    t = fit_temperature(logits, labels)
    best = negative_log_likelihood(logits / t, labels, from_logits=True)
    for nearby in (0.9 * t, 0.99 * t, 1.01 * t, 1.1 * t):
        assert best <= negative_log_likelihood(logits / nearby, labels, from_logits=True) + 1e-12


def test_init_does_not_matter(calibrated_logits):
    logits, labels = calibrated_logits(n=1000, seed=4)
    a = fit_temperature(2 * logits, labels, init_temperature=0.1)
    b = fit_temperature(2 * logits, labels, init_temperature=10.0)
    assert a == pytest.approx(b, rel=1e-5)


def test_input_types_are_preserved(calibrated_logits):
    logits, labels = calibrated_logits(n=200, seed=5)
    scaled_torch = apply_temperature(logits.to(torch.bfloat16), 2.0)
    assert isinstance(scaled_torch, torch.Tensor) and scaled_torch.dtype == torch.bfloat16
    scaled_np = apply_temperature(logits.numpy().astype(np.float32), 2.0)
    assert isinstance(scaled_np, np.ndarray) and scaled_np.dtype == np.float32
    np.testing.assert_allclose(scaled_np, logits.numpy() / 2.0, rtol=1e-6)
    assert isinstance(apply_temperature(logits.tolist(), 2.0), np.ndarray)


def test_probabilities_in_probabilities_out(calibrated_logits):
    logits, labels = calibrated_logits(n=500, seed=6)
    sharp = 3.0 * logits
    probs = sharp.softmax(1)
    t_from_probs = fit_temperature(probs, labels)
    assert t_from_probs == pytest.approx(fit_temperature(sharp, labels), rel=1e-6)
    calibrated_probs = apply_temperature(probs, t_from_probs)
    torch.testing.assert_close(calibrated_probs, (sharp / t_from_probs).softmax(1))
    # probabilities declared as logits are scaled as logits
    torch.testing.assert_close(apply_temperature(probs, 2.0, from_logits=True), probs / 2.0)


def test_scaler_object(calibrated_logits):
    logits, labels = calibrated_logits(n=1000, seed=7)
    scaler = TemperatureScaler()
    with pytest.raises(RuntimeError):
        scaler.transform(logits)
    out = scaler.fit_transform(3 * logits, labels)
    assert scaler.temperature_ == pytest.approx(fit_temperature(3 * logits, labels))
    torch.testing.assert_close(out, 3 * logits / scaler.temperature_)
    assert "temperature_" in repr(scaler)
    assert expected_calibration_error(out, labels) < expected_calibration_error(3 * logits, labels)
    assert accuracy(out, labels) == accuracy(3 * logits, labels)


def test_degenerate_separable_data_is_clamped():
    # perfectly separable validation logits want T -> 0; the fit stays finite and inside [0.01, 100]
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0]] * 10)
    labels = torch.tensor([0, 1] * 10)
    t = fit_temperature(logits, labels)
    assert 0.01 <= t < 1.0


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: apply_temperature(np.zeros((2, 3)), 0.0), "temperature"),
        (lambda: apply_temperature(np.zeros((2, 3)), -1.0), "temperature"),
        (lambda: apply_temperature(np.zeros((2, 3)), float("nan")), "temperature"),
        (lambda: apply_temperature(np.zeros((2, 3)), "hot"), "temperature"),
        (lambda: apply_temperature(np.zeros(3), 2.0), "logits"),
        (lambda: fit_temperature(np.zeros((2, 3)), [0, 3]), "labels"),
        (lambda: fit_temperature(np.full((2, 3), np.nan), [0, 1]), "logits"),
        (lambda: fit_temperature(np.zeros((2, 3)), [0, 1], init_temperature=0), "init_temperature"),
        (lambda: fit_temperature(np.zeros((2, 3)), [0, 1], max_iter=0), "max_iter"),
    ],
)
def test_bad_input(call, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
