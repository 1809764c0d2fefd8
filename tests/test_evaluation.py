"""Base-to-new / domain-generalisation evaluation and the paper's tables, against hand computations."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from peft_dor.cli.tables import aggregate_results, format_csv, format_markdown, format_run_summary, write_tables
from peft_dor.evaluation import (
    combine_base_new,
    evaluate_base_to_new,
    evaluate_domain_generalization,
    evaluate_split,
    harmonic_mean,
)
from tests.helpers import pixel_rows


def test_harmonic_mean_reproduces_publishedpixel_rows():
    # published base-to-new averages: CoOp 82.69 / 63.22 -> 71.66, PromptSRC 84.26 / 76.10 -> 79.97
    assert round(harmonic_mean(82.69, 63.22), 2) == 71.66
    assert round(harmonic_mean(84.26, 76.10), 2) == 79.97
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_ece_hm_is_the_arithmetic_mean():
    # the DOR paper's average table: CoOp ECE 3.07 / 14.58 -> "HM" 8.82 (the harmonic mean would be 5.07)
    hm = combine_base_new({"accuracy": 0.8269, "ece": 0.0307, "n_samples": 10}, {"accuracy": 0.6322, "ece": 0.1458})
    assert 100 * hm["ece"] == pytest.approx(8.825)
    assert round(100 * hm["accuracy"], 2) == 71.66
    assert "n_samples" not in hm


@pytest.fixture
def coop(tiny_clip, class_names):
    from peft import get_peft_model

    import peft_dor  # noqa: F401

    torch.manual_seed(0)
    return get_peft_model(tiny_clip, peft_dor.CoOpConfig(class_names=class_names[:3], n_ctx=2)).eval()


def _reference(model, pixels, labels, names):
    model.set_class_names(names)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits.numpy()
    probs = torch.softmax(torch.from_numpy(logits).double(), -1).numpy()
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == np.asarray(labels)).astype(float)
    return logits, correct.mean(), conf, correct


def test_evaluate_split_against_hand_computation(coop, pixel_values, class_names):
    labels = [0, 1, 2, 1]
    logits, accuracy, conf, correct = _reference(coop, pixel_values, labels, class_names[:3])
    # one bin: ECE = |accuracy - mean confidence|
    result = evaluate_split(coop, pixel_rows(pixel_values, labels), class_names[:3], n_bins=1, batch_size=3)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-5, atol=1e-5)
    assert result.metrics["accuracy"] == pytest.approx(accuracy)
    assert result.metrics["ece"] == pytest.approx(abs(accuracy - conf.mean()), abs=1e-6)
    assert result.metrics["n_samples"] == 4 and result.metrics["n_bins"] == 1


def test_base_to_new_uses_each_side_only_and_restores_the_base_classes(coop, pixel_values, class_names):
    base_names, new_names = class_names[:3], class_names[3:]
    base = pixel_rows(pixel_values, [0, 1, 2, 0])
    new = pixel_rows(pixel_values, [1, 0, 1, 0])
    _, new_accuracy, _, _ = _reference(coop, pixel_values, [1, 0, 1, 0], new_names)
    coop.set_class_names(base_names)
    result = evaluate_base_to_new(coop, base, new, base_names, new_names, n_bins=10)
    assert result.new.logits.shape == (4, 2)  # new classes only, never base + new
    assert result.base.logits.shape == (4, 3)
    assert result.new.metrics["accuracy"] == pytest.approx(new_accuracy)
    assert coop.base_model.model.class_names == base_names
    out = result.to_dict()
    assert set(out) == {"base", "new", "hm"}
    assert out["hm"]["accuracy"] == pytest.approx(harmonic_mean(out["base"]["accuracy"], out["new"]["accuracy"]))
    assert out["hm"]["ece"] == pytest.approx((out["base"]["ece"] + out["new"]["ece"]) / 2)


def test_domain_generalization_scores_each_target_over_its_classes(coop, pixel_values, class_names):
    source = (pixel_rows(pixel_values, [0, 1, 2, 0]), class_names[:3])
    targets = {
        "t1": (pixel_rows(pixel_values, [0, 1, 0, 1]), class_names[1:3]),
        "t2": (pixel_rows(pixel_values[:2], [0, 0]), class_names[3:]),
    }
    result = evaluate_domain_generalization(coop, source, targets, n_bins=5)
    assert result.targets["t1"].logits.shape == (4, 2) and result.targets["t2"].logits.shape == (2, 2)
    mean = result.to_dict()["target_mean"]
    assert mean["accuracy"] == pytest.approx(
        (result.targets["t1"].metrics["accuracy"] + result.targets["t2"].metrics["accuracy"]) / 2
    )
    assert coop.base_model.model.class_names == class_names[:3]


def _record(method, dataset, seed, base_acc, new_acc, base_ece, new_ece):
    return {
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "base": {"accuracy": base_acc, "ece": base_ece},
        "new": {"accuracy": new_acc, "ece": new_ece},
    }


@pytest.fixture
def records():
    return [
        _record("coop", "dtd", 1, 0.80, 0.50, 0.02, 0.10),
        _record("coop", "dtd", 2, 0.70, 0.60, 0.04, 0.20),
        _record("coop", "eurosat", 1, 0.90, 0.40, 0.01, 0.30),
        _record("kgcoop", "dtd", 1, 0.75, 0.65, 0.03, 0.05),
    ]


def test_aggregate_means_over_seeds_then_hm_of_means(records):
    table = aggregate_results(records)
    dtd = table["coop"]["dtd"]
    assert dtd["n_seeds"] == 2
    assert dtd["base"]["accuracy"] == pytest.approx(0.75) and dtd["new"]["accuracy"] == pytest.approx(0.55)
    assert dtd["hm"]["accuracy"] == pytest.approx(2 * 0.75 * 0.55 / 1.30)
    assert dtd["hm"]["ece"] == pytest.approx((0.03 + 0.15) / 2)
    average = table["coop"]["Average"]
    # mean base 0.825, mean new 0.475 -> HM of the means (not the mean of per-dataset HMs)
    assert average["hm"]["accuracy"] == pytest.approx(2 * 0.825 * 0.475 / 1.3)
    per_dataset_mean = (dtd["hm"]["accuracy"] + table["coop"]["eurosat"]["hm"]["accuracy"]) / 2
    assert average["hm"]["accuracy"] != pytest.approx(per_dataset_mean)
    assert average["hm"]["ece"] == pytest.approx(((0.03 + 0.01) / 2 + (0.15 + 0.30) / 2) / 2)
    assert "Average" not in table["kgcoop"]  # one dataset: no average row


def test_markdown_and_csv_tables(records, tmp_path):
    table = aggregate_results(records)
    md = format_markdown(table)
    assert md.index("### Average") < md.index("### dtd") < md.index("### eurosat")
    assert "| Method | Base Acc | New Acc | HM Acc | Base ECE | New ECE | HM† ECE |" in md
    assert "| coop (2 seeds) | 75.00 | 55.00 | 63.46 | 3.00 | 15.00 | 9.00 |" in md
    assert "| kgcoop (1 seeds) | 75.00 | 65.00 | 69.64 | 3.00 | 5.00 | 4.00 |" in md
    rows = list(csv.DictReader(io.StringIO(format_csv(table))))
    ece = next(r for r in rows if (r["method"], r["dataset"], r["metric"]) == ("coop", "Average", "ece"))
    assert float(ece["base"]) == pytest.approx(0.02) and float(ece["new"]) == pytest.approx(0.225)
    md_path, csv_path = write_tables(table, tmp_path)
    with open(md_path) as md_file, open(csv_path) as csv_file:
        assert md_file.read() == md and csv_file.read() == format_csv(table)


def test_run_summary():
    text = format_run_summary(
        {
            "base": {"accuracy": 0.5, "ece": 0.1},
            "new": {"accuracy": 0.25, "ece": 0.3},
            "hm": {"accuracy": 1 / 3, "ece": 0.2},
        }
    )
    assert text.splitlines()[1].split() == ["accuracy", "50.00", "25.00", "33.33"]
