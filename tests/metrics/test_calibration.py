"""Tests for the functional core, peft_dor.metrics.functional."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_dor.metrics import (
    REPORT_KEYS,
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

# ---------------------------------------------------------------------------------------------------------------------
# independent plain references (loops over samples and bins; no shared code with the implementation)
# ---------------------------------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def plain_binned_errors(conf, correct, groups):
    """ECE-style sum, standard max and weighted max over the groups (a list of lists of sample indices)."""
    n = len(conf)
    total, worst, worst_weighted = 0.0, 0.0, 0.0
    for members in groups:
        if not members:
            continue
        acc = sum(correct[i] for i in members) / len(members)
        mean_conf = sum(conf[i] for i in members) / len(members)
        gap = abs(acc - mean_conf)
        total += len(members) / n * gap
        worst = max(worst, gap)
        worst_weighted = max(worst_weighted, len(members) / n * gap)
    return total, worst, worst_weighted


def plain_uniform_groups(conf, n_bins):
    # the documented edges are the float64 values of np.linspace(0, 1, M + 1) (as in NumPy, torchmetrics, the lab)
    edges = np.linspace(0.0, 1.0, n_bins + 1).tolist()
    groups = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        b = next((b for b in range(n_bins) if edges[b] <= c < edges[b + 1]), n_bins - 1)
        groups[b].append(i)
    return groups


def plain_quantile_groups(conf, n_bins):
    """Equal-mass bins written from the definition: linear-interpolation quantiles, merged ties, right-closed edges."""
    edges = []
    for b in range(n_bins + 1):
        # NumPy's "linear" quantile, taken one at a time; its rounding must match for values sitting on an edge
        e = float(np.quantile(conf, b / n_bins))
        if not edges or e - edges[-1] > 1e-8:
            edges.append(e)
    interior = edges[1:-1]
    groups = [[] for _ in range(max(len(edges) - 1, 1))]
    for i, c in enumerate(conf):
        groups[sum(1 for e in interior if c >= e)].append(i)
    return groups


def plain_top_label(probs, labels):
    conf = [float(max(row)) for row in probs]
    correct = [float(int(np.argmax(row)) == int(y)) for row, y in zip(probs, labels, strict=True)]
    return conf, correct


# ---------------------------------------------------------------------------------------------------------------------
# hand-worked fixtures
# ---------------------------------------------------------------------------------------------------------------------


def test_hand_fixture_per_bin_table(hand5):
    table = reliability_table(hand5.probs, hand5.labels, hand5.n_bins)
    assert table.counts.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(table.edges, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert np.isnan(table.accuracy[0]) and np.isnan(table.confidence[0])  # the empty bin
    np.testing.assert_allclose(table.accuracy[1:], [1.0, 0.5, 2 / 3, 0.5], atol=1e-12)
    np.testing.assert_allclose(table.confidence[1:], [0.35, 0.5, 0.7, 0.9225], atol=1e-12)
    assert table.n_samples == 10 and table.n_bins == 5
    assert table.ece == pytest.approx(0.244, abs=1e-12)
    assert table.mce == pytest.approx(0.65, abs=1e-12)


def test_hand_fixture_metrics(hand5):
    p, y, m = hand5.probs, hand5.labels, hand5.n_bins
    assert expected_calibration_error(p, y, m) == pytest.approx(0.244, abs=1e-12)
    assert expected_calibration_error(p, y, m, norm="max") == pytest.approx(0.65, abs=1e-12)
    assert expected_calibration_error(p, y, m, norm="l2") == pytest.approx(
        math.sqrt((0.4225 + 3 / 900 + 4 * 0.4225**2) / 10), abs=1e-12
    )
    assert maximum_calibration_error(p, y, m) == pytest.approx(0.65, abs=1e-12)
    assert maximum_calibration_error(p, y, m, variant="weighted") == pytest.approx(0.169, abs=1e-12)
    assert average_calibration_error(p, y, m) == pytest.approx((0.65 + 0 + 1 / 30 + 0.4225) / 4, abs=1e-12)
    assert adaptive_calibration_error(p, y, n_bins=2) == pytest.approx(0.174, abs=1e-12)
    assert accuracy(p, y) == pytest.approx(0.6)
    # the count-weighted MCE is never larger than the ECE, the standard one never smaller
    assert maximum_calibration_error(p, y, m, variant="weighted") <= expected_calibration_error(p, y, m)


def test_hand_fixture_report(hand5):
    report = calibration_report(hand5.probs, hand5.labels, hand5.n_bins)
    assert tuple(report) == REPORT_KEYS == ("accuracy", "ece", "mce", "ace", "nll", "brier")
    assert all(isinstance(v, float) for v in report.values())
    assert report["ece"] == pytest.approx(0.244, abs=1e-12)
    assert report["mce"] == pytest.approx(0.65, abs=1e-12)
    # ACE with 5 quantile bins of 10 samples: pairs (.35 .45) (.55 .65) (.70 .75) (.85 .90) (.95 .99)
    expected_ace = (abs(0.5 - 0.40) + abs(1.0 - 0.60) + abs(0.5 - 0.725) + abs(1.0 - 0.875) + abs(0.0 - 0.97)) / 5
    assert report["ace"] == pytest.approx(expected_ace, abs=1e-12)
    weighted = calibration_report(hand5.probs, hand5.labels, hand5.n_bins, mce_variant="weighted")
    assert weighted["mce"] == pytest.approx(0.169, abs=1e-12)
    extras = calibration_report(hand5.probs, hand5.labels, hand5.n_bins, extras=True)
    assert extras["n_bins"] == 5 and extras["n_samples"] == 10
    assert extras["confidence"] == pytest.approx(np.mean([0.35, 0.45, 0.55, 0.65, 0.7, 0.75, 0.85, 0.9, 0.95, 0.99]))
    assert extras["rmsce"] == pytest.approx(expected_calibration_error(hand5.probs, hand5.labels, 5, norm="l2"))


def test_nll_and_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    labels = np.array([0, 2])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    brier_0 = 0.3**2 + 0.2**2 + 0.1**2
    brier_1 = 0.1**2 + 0.6**2 + 0.7**2
    assert brier_score(probs, labels) == pytest.approx((brier_0 + brier_1) / 2)
    assert brier_score(probs, labels, normalize=True) == pytest.approx((brier_0 + brier_1) / 2 / 3)
    # logits: NLL through log-softmax equals cross-entropy
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 30.0, -30.0]], dtype=torch.float64)
    target = torch.tensor([0, 2])
    expected = torch.nn.functional.cross_entropy(logits, target).item()
    assert negative_log_likelihood(logits, target) == pytest.approx(expected, rel=1e-12)


def test_classwise_by_hand():
    # binary: class 0 probs .95 .85 .25 .65 with hits 1 0 0 1; class 1 is the mirror image. 5 bins.
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]])
    labels = np.array([0, 1, 1, 0])
    # class 0: bin4 {.95 .85} acc .5 conf .9 -> 2/4*.4; bin1 {.25} -> 1/4*.25; bin3 {.65} -> 1/4*.35  => .35
    # class 1: bin0 {.05 .15} acc .5 conf .1 -> 2/4*.4; bin3 {.75} -> 1/4*.25; bin1 {.35} -> 1/4*.35  => .35
    assert classwise_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.35, abs=1e-12)


def test_piece_by_hand_and_bounds(hand5, random_logits):
    p, y = hand5.probs, hand5.labels
    # one proximity bin: PIECE is the ECE
    assert piece(p, y, proximity=np.zeros(10), n_bins=5, n_proximity_bins=1) == pytest.approx(0.244, abs=1e-12)
    # proximity splitting every confidence bin into singletons: PIECE = mean |correct - conf|
    conf, correct = plain_top_label(p, y)
    singletons = np.mean([abs(a - c) for a, c in zip(correct, conf, strict=True)])
    assert piece(p, y, proximity=np.arange(10.0), n_bins=5, n_proximity_bins=10) == pytest.approx(singletons)
    # refining the bins can only increase the error (triangle inequality)
    logits, labels = random_logits(n=500, seed=3)
    prox = np.random.default_rng(0).random(500)
    assert piece(logits, labels, prox, n_bins=10) >= expected_calibration_error(logits, labels, 10) - 1e-12


def test_knn_proximity():
    refs = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    feats = np.array([[0.0, 0.0], [3.0, 4.0]])
    prox = knn_proximity(feats, refs, k=2)
    # [3, 4]: distances 5 (origin), sqrt(18) ([0, 1]), sqrt(5) ([5, 5]); the two nearest are sqrt(5) and sqrt(18)
    expected = [math.exp(-(0.0 + 1.0) / 2), math.exp(-(math.sqrt(5) + math.sqrt(18)) / 2)]
    np.testing.assert_allclose(prox, expected, rtol=1e-12)
    chunked = knn_proximity(np.random.default_rng(0).random((50, 4)), np.random.default_rng(1).random((20, 4)), 5,
                            chunk_size=7)  # fmt: skip
    whole = knn_proximity(np.random.default_rng(0).random((50, 4)), np.random.default_rng(1).random((20, 4)), 5)
    np.testing.assert_allclose(chunked, whole)
    cosine = knn_proximity([[1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]], k=1, metric="cosine")
    np.testing.assert_allclose(cosine, [1.0])
    with pytest.raises(ValueError, match="`k`"):
        knn_proximity(feats, refs, k=4)


# ---------------------------------------------------------------------------------------------------------------------
# bin-edge convention
# ---------------------------------------------------------------------------------------------------------------------


def test_exact_edges_and_saturated_confidence(edge4):
    table = reliability_table(edge4.probs, edge4.labels, edge4.n_bins, from_logits=False)
    # .5 opens bin [.5, .75); .75 opens the last bin; 1.0 is counted in the (closed) last bin, nowhere else
    assert table.counts.tolist() == [0, 0, 1, 3]
    np.testing.assert_allclose(table.accuracy[2:], [1.0, 1 / 3])
    np.testing.assert_allclose(table.confidence[2:], [0.5, 11 / 12])
    assert expected_calibration_error(edge4.probs, edge4.labels, 4) == pytest.approx(0.5625, abs=1e-12)


def test_lab_edge_rule(edge4):
    # The DOR lab code leaves 1.0 out of the last bin's means (only .75 is averaged: gap .25) but counts it in the
    # bin's weight (3/4): ECE = (.5 * 1 + .25 * 3) / 4.
    lab = expected_calibration_error(edge4.probs, edge4.labels, 4, edge_rule="lab")
    assert lab == pytest.approx(0.3125, abs=1e-12)
    # the lab rule and the standard rule agree when no confidence is exactly 1.0
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1])
    assert expected_calibration_error(p, y, 10, edge_rule="lab") == expected_calibration_error(p, y, 10)
    report = calibration_report(edge4.probs, edge4.labels, 4, edge_rule="lab")
    assert report["ece"] == pytest.approx(0.3125, abs=1e-12)


def test_lab_rule_matches_lab_code_formula(random_logits):
    """The lab's ECE (np.digitize means, np.histogram weights), transcribed, on data with saturated confidences."""
    logits, labels = random_logits(n=300, seed=5, scale=40.0)  # scale 40 saturates many confidences to 1.0
    probs = logits.softmax(1).numpy()
    conf, pred, y = probs.max(1), probs.argmax(1), labels.numpy()
    assert (conf == 1.0).sum() > 10
    bins = np.linspace(0, 1, 11)
    idx = np.digitize(conf, bins) - 1
    acc_b = np.array([np.mean(y[idx == i] == pred[idx == i]) if np.any(idx == i) else 0 for i in range(10)])
    conf_b = np.array([np.mean(conf[idx == i]) if np.any(idx == i) else 0 for i in range(10)])
    lab = np.sum(np.histogram(conf, bins)[0] / len(conf) * np.abs(conf_b - acc_b))
    assert expected_calibration_error(probs, y, 10, edge_rule="lab") == pytest.approx(lab, abs=1e-12)


def test_torchmetrics_edge_convention_differs_only_at_one(edge4):
    """Pins torchmetrics' convention: bucketize(right=True) - 1 against n_bins + 1 boundaries gives confidences of
    exactly 1.0 a bin of their own. Our closed last bin differs there (0.5625 vs 0.6875) and nowhere else."""
    tm = pytest.importorskip("torchmetrics.functional.classification")
    probs, labels = torch.tensor(edge4.probs), torch.tensor(edge4.labels)
    theirs = float(tm.multiclass_calibration_error(probs, labels, num_classes=2, n_bins=4, norm="l1"))
    assert theirs == pytest.approx(0.6875, abs=1e-6)
    ours = expected_calibration_error(probs, labels, 4)
    assert ours == pytest.approx(0.5625, abs=1e-12)
    # without the saturated rows both agree exactly on the remaining exact-edge confidences .5 and .75
    theirs_2 = float(tm.multiclass_calibration_error(probs[:2], labels[:2], num_classes=2, n_bins=4))
    assert expected_calibration_error(probs[:2], labels[:2], 4) == pytest.approx(theirs_2, abs=1e-7)


def test_zero_probability_falls_in_first_bin():
    # Top-label confidences are >= 1/C, so 0.0 only reaches a bin through classwise binning of class probabilities.
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    labels = np.array([0, 1])
    # class 0: both 1.0 in the last bin, hits (1, 0): gap .5; class 1: both 0.0 in the first bin, hits (0, 1): gap .5
    assert classwise_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------------------------------
# parity with torchmetrics and netcal
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_bins", [5, 10, 15, 20])
@pytest.mark.parametrize("norm", ["l1", "max", "l2"])
def test_matches_torchmetrics(random_logits, n_bins, norm):
    tm = pytest.importorskip("torchmetrics.functional.classification")
    for seed in range(3):
        logits, labels = random_logits(n=1000, c=7, seed=seed)
        theirs = float(tm.multiclass_calibration_error(logits, labels, num_classes=7, n_bins=n_bins, norm=norm))
        assert expected_calibration_error(logits, labels, n_bins, norm=norm) == pytest.approx(theirs, abs=1e-6)
        probs = logits.softmax(1)  # probabilities in, same result
        assert expected_calibration_error(probs, labels, n_bins, norm=norm) == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_matches_netcal(random_logits, n_bins):
    netcal_metrics = pytest.importorskip("netcal.metrics")
    logits, labels = random_logits(n=1000, c=7, seed=n_bins)
    probs, y = logits.softmax(1).numpy(), labels.numpy()
    assert expected_calibration_error(probs, y, n_bins) == pytest.approx(
        netcal_metrics.ECE(bins=n_bins).measure(probs, y), abs=1e-6
    )
    assert maximum_calibration_error(probs, y, n_bins) == pytest.approx(
        netcal_metrics.MCE(bins=n_bins).measure(probs, y), abs=1e-6
    )
    # netcal's ACE is the *average* calibration error, not the adaptive ECE
    assert average_calibration_error(probs, y, n_bins) == pytest.approx(
        netcal_metrics.ACE(bins=n_bins).measure(probs, y), abs=1e-6
    )


@pytest.mark.parametrize("n_bins", [2, 5, 10, 15])
def test_adaptive_matches_plain_reference(random_logits, n_bins):
    logits, labels = random_logits(n=777, seed=n_bins)
    conf, correct = plain_top_label(logits.softmax(1).numpy(), labels.numpy())
    expected, _, _ = plain_binned_errors(conf, correct, plain_quantile_groups(conf, n_bins))
    assert adaptive_calibration_error(logits, labels, n_bins) == pytest.approx(expected, abs=1e-12)


def test_adaptive_matches_sklearn_kbins(random_logits):
    """The DOR lab computes ACE with KBinsDiscretizer(strategy="quantile"); same bins, same number."""
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    logits, labels = random_logits(n=600, seed=11)
    probs = logits.softmax(1).numpy()
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels.numpy()).astype(float)
    kwargs = (
        {"quantile_method": "linear"} if "quantile_method" in preprocessing.KBinsDiscretizer().get_params() else {}
    )
    kbins = preprocessing.KBinsDiscretizer(n_bins=10, encode="ordinal", strategy="quantile", **kwargs)
    idx = kbins.fit_transform(conf[:, None]).ravel().astype(int)
    groups = [list(np.flatnonzero(idx == b)) for b in range(idx.max() + 1)]
    expected, _, _ = plain_binned_errors(conf, correct, groups)
    assert adaptive_calibration_error(probs, labels, 10) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------------------------------


def test_all_correct_and_all_wrong():
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    right = probs.argmax(1)
    wrong = (right + 1) % 3
    mean_conf = probs.max(1).mean()
    for n_bins in (1, 3, 15):
        assert expected_calibration_error(probs, right, n_bins) == pytest.approx(1 - mean_conf)
        assert expected_calibration_error(probs, wrong, n_bins) == pytest.approx(mean_conf)
        assert adaptive_calibration_error(probs, right, n_bins) == pytest.approx(1 - mean_conf)
        assert adaptive_calibration_error(probs, wrong, n_bins) == pytest.approx(mean_conf)
    assert accuracy(probs, right) == 1.0 and accuracy(probs, wrong) == 0.0
    assert maximum_calibration_error(probs, wrong, 15) == pytest.approx(0.9)


def test_single_sample():
    probs = np.array([[0.2, 0.8]])
    report = calibration_report(probs, [1], n_bins=15)
    assert report["accuracy"] == 1.0
    assert report["ece"] == report["mce"] == report["ace"] == pytest.approx(0.2)
    assert calibration_report(probs, [0])["ece"] == pytest.approx(0.8)
    assert reliability_table(probs, [1], strategy="adaptive").counts.tolist() == [1]


def test_perfect_confidence_is_perfectly_calibrated():
    probs = np.eye(4)[[0, 1, 2, 3, 0]]
    labels = np.array([0, 1, 2, 3, 0])
    report = calibration_report(probs, labels)
    assert report["ece"] == report["mce"] == report["ace"] == 0.0
    assert report["brier"] == 0.0 and report["nll"] == 0.0
    # a zero probability on the true class gives a large but finite NLL (clipped at float64 eps)
    assert math.isfinite(negative_log_likelihood(probs, [1, 0, 0, 0, 1]))


def test_adaptive_ties_merge_into_fewer_bins():
    # confidences .6 .7 and six saturated 1.0: quantile edges .6 .925 1 1 1 merge to .6 .925 1 -> two bins
    conf = [0.6, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    probs = np.array([[c, 1 - c] for c in conf])
    labels = np.array([0, 1, 0, 0, 0, 1, 1, 0])  # correct: 1 0 1 1 1 0 0 1
    table = reliability_table(probs, labels, 4, strategy="adaptive")
    assert table.n_bins == 2
    assert table.counts.tolist() == [2, 6]
    np.testing.assert_allclose(table.edges, [0.6, 0.925, 1.0])
    expected = 2 / 8 * abs(0.5 - 0.65) + 6 / 8 * abs(4 / 6 - 1.0)
    assert adaptive_calibration_error(probs, labels, 4) == pytest.approx(expected)
    assert table.ece == pytest.approx(expected)
    # all confidences identical: a single bin whatever n_bins asks for
    same = np.tile([[0.8, 0.2]], (5, 1))
    assert adaptive_calibration_error(same, [0, 0, 0, 1, 1], 10) == pytest.approx(abs(0.6 - 0.8))
    # a value equal to an interior edge belongs to the bin above it
    probs3 = np.array([[c, 1 - c] for c in (0.6, 0.7, 0.8)])
    assert reliability_table(probs3, [0, 0, 0], 2, strategy="adaptive").counts.tolist() == [1, 2]


def test_empty_bins_do_not_count(hand5):
    # n_bins larger than the sample count leaves most bins empty; ECE is unchanged by adding empty bins at the
    # bottom (confidences are all >= .35, so 100 bins of width .01 put every sample alone)
    conf, correct = plain_top_label(hand5.probs, hand5.labels)
    singletons = np.mean([abs(a - c) for a, c in zip(correct, conf, strict=True)])
    assert expected_calibration_error(hand5.probs, hand5.labels, 1000) == pytest.approx(singletons)
    table = reliability_table(hand5.probs, hand5.labels, 1000)
    assert (table.counts > 0).sum() == 10 and np.isnan(table.accuracy).sum() == 990


def test_one_bin_is_global_gap(random_logits):
    logits, labels = random_logits(n=300)
    report = calibration_report(logits, labels, n_bins=1, extras=True)
    assert report["ece"] == pytest.approx(abs(report["accuracy"] - report["confidence"]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_half_precision_inputs(random_logits, dtype):
    logits, labels = random_logits(n=2000, c=10, seed=2)
    low = logits.to(dtype)
    # computed in float64 from the low-precision values: identical to upcasting first
    assert calibration_report(low, labels) == calibration_report(low.to(torch.float64), labels)
    # and close to the full-precision numbers (bf16 keeps ~3 significant digits)
    full = calibration_report(logits, labels)
    for key in ("accuracy", "ece", "ace", "nll", "brier"):
        assert calibration_report(low, labels)[key] == pytest.approx(full[key], abs=0.02)
    # half-precision *probabilities* are still detected as probabilities despite their rounding
    probs = logits.softmax(1).to(dtype)
    assert calibration_report(probs, labels) == calibration_report(probs, labels, from_logits=False)


def test_numpy_float16_and_lists(random_logits):
    logits, labels = random_logits(n=200)
    half = logits.numpy().astype(np.float16)
    assert expected_calibration_error(half, labels.numpy()) == expected_calibration_error(
        half.astype(np.float64), labels.numpy()
    )
    as_lists = calibration_report(logits.tolist(), labels.tolist())
    assert as_lists == calibration_report(logits, labels)


def test_saturated_fp16_logits_count_in_last_bin():
    # scale-100 logits in fp16 saturate the softmax to exactly 1.0; they must land in the last bin
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]], dtype=torch.float16)
    table = reliability_table(logits, [0, 0], n_bins=10)
    assert table.counts[-1] == 2 and table.counts.sum() == 2
    assert expected_calibration_error(logits, [0, 0], 10) == pytest.approx(0.5)


def test_logits_detection_and_override():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    labels = np.array([0, 2])
    # detected as probabilities: not soft-maxed again
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    # forced logits: soft-maxed
    forced = negative_log_likelihood(probs, labels, from_logits=True)
    assert forced == pytest.approx(torch.nn.functional.cross_entropy(torch.tensor(probs), torch.tensor(labels)).item())
    # rows in [0, 1] that do not sum to 1 are logits under detection
    not_probs = np.array([[0.9, 0.8, 0.1]])
    assert top_label_stats(not_probs, [0]).confidence[0] == pytest.approx(_softmax(not_probs).max())
    # -inf logits (a masked class) are fine
    masked = np.array([[2.0, -np.inf, 0.0]])
    assert accuracy(masked, [0]) == 1.0


def test_device_and_grad_tensors():
    logits = torch.randn(10, 3, requires_grad=True)
    labels = torch.randint(0, 3, (10,))
    assert 0.0 <= expected_calibration_error(logits, labels) <= 1.0


def test_large_n_is_vectorised():
    # two million samples: must finish quickly (timings are recorded by benchmarks/metrics_speed.py, not asserted)
    g = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(2_000_000, 4, generator=g)
    labels = torch.randint(0, 4, (2_000_000,), generator=g)
    report = calibration_report(logits, labels)
    assert 0.0 <= report["ece"] <= 1.0 and 0.0 <= report["ace"] <= 1.0


# ---------------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------------

_P = np.array([[0.7, 0.3], [0.4, 0.6]])
_Y = np.array([0, 1])


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: expected_calibration_error(np.array([0.7, 0.3]), _Y), "preds"),
        (lambda: expected_calibration_error(np.zeros((2, 2, 2)), _Y), "preds"),
        (lambda: expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)), "preds"),
        (lambda: expected_calibration_error(np.array([[np.nan, 0.0], [0.0, 1.0]]), _Y), "preds"),
        (lambda: expected_calibration_error(np.array([[np.inf, 0.0], [0.0, 1.0]]), _Y), "preds"),
        (lambda: expected_calibration_error(np.array([["a", "b"], ["c", "d"]]), _Y), "preds"),
        (lambda: expected_calibration_error(_P, np.array([[0], [1]])), "labels"),
        (lambda: expected_calibration_error(_P, np.array([0, 1, 1])), "labels"),
        (lambda: expected_calibration_error(_P, np.array([0, 2])), "labels"),
        (lambda: expected_calibration_error(_P, np.array([-1, 0])), "labels"),
        (lambda: expected_calibration_error(_P, np.array([0.5, 1.0])), "labels"),
        (lambda: expected_calibration_error(_P, _Y, n_bins=0), "n_bins"),
        (lambda: expected_calibration_error(_P, _Y, n_bins=-3), "n_bins"),
        (lambda: expected_calibration_error(_P, _Y, n_bins=2.5), "n_bins"),
        (lambda: expected_calibration_error(_P, _Y, n_bins=True), "n_bins"),
        (lambda: adaptive_calibration_error(_P, _Y, n_bins=0), "n_bins"),
        (lambda: calibration_report(_P, _Y, n_bins=0), "n_bins"),
        (lambda: expected_calibration_error(_P, _Y, norm="l3"), "norm"),
        (lambda: expected_calibration_error(_P, _Y, edge_rule="closed"), "edge_rule"),
        (lambda: maximum_calibration_error(_P, _Y, variant="max"), "variant"),
        (lambda: calibration_report(_P, _Y, mce_variant="max"), "mce_variant"),
        (lambda: reliability_table(_P, _Y, strategy="quantile"), "strategy"),
        (lambda: expected_calibration_error(_P, _Y, from_logits="yes"), "from_logits"),
        (lambda: expected_calibration_error(np.array([[0.7, 0.7], [0.4, 0.6]]), _Y, from_logits=False), "preds"),
        (lambda: expected_calibration_error(np.array([[1.5, -0.5], [0.4, 0.6]]), _Y, from_logits=False), "preds"),
        (lambda: piece(_P, _Y, proximity=[1.0]), "proximity"),
        (lambda: piece(_P, _Y, proximity=[1.0, np.nan]), "proximity"),
        (lambda: piece(_P, _Y, proximity=[1.0, 2.0], n_proximity_bins=0), "n_proximity_bins"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()


# ---------------------------------------------------------------------------------------------------------------------
# as_percent
# ---------------------------------------------------------------------------------------------------------------------


def test_as_percent():
    assert as_percent(0.0307) == pytest.approx(3.07)
    assert as_percent(0.030712, ndigits=2) == 3.07
    metrics = {"eval_ece": 0.1, "ece_base": 0.2, "accuracy": 0.5, "nll": 1.5, "brier": 0.3, "n_bins": 10,
               "eval_loss": 2.0, "mce": 0.05}  # fmt: skip
    scaled = as_percent(metrics, ndigits=3)
    assert scaled == {"eval_ece": 10.0, "ece_base": 20.0, "accuracy": 50.0, "nll": 1.5, "brier": 0.3, "n_bins": 10,
                      "eval_loss": 2.0, "mce": 5.0}  # fmt: skip
    assert as_percent({"nll": 0.5, "ece": 0.1}, keys=["nll"]) == {"nll": 50.0, "ece": 0.1}
    assert metrics["eval_ece"] == 0.1  # not mutated


# ---------------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------------


@st.composite
def classification_batches(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 5))
    logits = draw(
        st.lists(st.lists(st.floats(-8, 8, allow_nan=False), min_size=c, max_size=c), min_size=n, max_size=n)
    )
    labels = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    # coarse logits make ties and repeated confidences common, which is where binning rules bite
    coarse = draw(st.booleans())
    arr = np.round(np.array(logits), 0) if coarse else np.array(logits)
    return arr, np.array(labels)


# database=None: no .hypothesis/ folder in the working tree
_SETTINGS = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(batch=classification_batches(), n_bins=st.integers(1, 20))
def test_property_bounds_and_ordering(batch, n_bins):
    logits, labels = batch
    report = calibration_report(logits, labels, n_bins, from_logits=True, extras=True)
    for key in ("accuracy", "ece", "mce", "ace", "rmsce"):
        assert 0.0 <= report[key] <= 1.0
    assert report["nll"] >= 0.0 and 0.0 <= report["brier"] <= 2.0
    # power-mean ordering of the l1 / l2 / max family, and weighted MCE <= ECE
    assert report["ece"] <= report["rmsce"] + 1e-12 <= report["mce"] + 2e-12
    weighted = maximum_calibration_error(logits, labels, n_bins, variant="weighted", from_logits=True)
    assert weighted <= report["ece"] + 1e-12


@_SETTINGS
@given(batch=classification_batches(), n_bins=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_property_order_invariance(batch, n_bins, seed):
    logits, labels = batch
    perm = np.random.default_rng(seed).permutation(len(labels))
    a = calibration_report(logits, labels, n_bins, from_logits=True)
    b = calibration_report(logits[perm], labels[perm], n_bins, from_logits=True)
    for key in REPORT_KEYS:
        assert a[key] == pytest.approx(b[key], abs=1e-12)


@_SETTINGS
@given(batch=classification_batches(), n_bins=st.integers(1, 20))
def test_property_agrees_with_plain_definition(batch, n_bins):
    logits, labels = batch
    # confidences as the implementation computes them (an ulp of softmax rounding moves a value sitting exactly on an
    # edge); what is checked is the binning and the reduction
    stats = top_label_stats(logits, labels, from_logits=True)
    conf, correct = stats.confidence.tolist(), stats.correct.tolist()
    # the prediction is the arg-max of the input itself, so softmax rounding (two logits 1e-38 apart both giving 0.5)
    # cannot create a tie
    assert correct == [float(v) for v in (np.argmax(logits, 1) == labels)]
    ece, mce, weighted = plain_binned_errors(conf, correct, plain_uniform_groups(conf, n_bins))
    ace, _, _ = plain_binned_errors(conf, correct, plain_quantile_groups(conf, n_bins))
    assert expected_calibration_error(logits, labels, n_bins, from_logits=True) == pytest.approx(ece, abs=1e-9)
    assert maximum_calibration_error(logits, labels, n_bins, from_logits=True) == pytest.approx(mce, abs=1e-9)
    assert maximum_calibration_error(logits, labels, n_bins, variant="weighted", from_logits=True) == pytest.approx(
        weighted, abs=1e-9
    )
    assert adaptive_calibration_error(logits, labels, n_bins, from_logits=True) == pytest.approx(ace, abs=1e-9)
    assert reliability_table(logits, labels, n_bins, from_logits=True).ece == pytest.approx(ece, abs=1e-9)
