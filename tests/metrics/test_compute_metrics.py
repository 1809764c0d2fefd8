"""Tests for the Trainer hook, peft_dor.metrics.calibration_compute_metrics (peft_dor/metrics/trainer.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from peft_dor.metrics import REPORT_KEYS, calibration_compute_metrics, calibration_report


class _EvalPrediction:
    """Duck-typed stand-in for transformers.EvalPrediction."""

    def __init__(self, predictions, label_ids):
        self.predictions, self.label_ids = predictions, label_ids


def test_plain_call_returns_the_report_keys(random_logits):
    logits, labels = random_logits(n=500, c=5)
    compute_metrics = calibration_compute_metrics(n_bins=10)
    metrics = compute_metrics(_EvalPrediction(logits.numpy().astype(np.float32), labels.numpy()))
    assert tuple(metrics) == REPORT_KEYS
    expected = calibration_report(logits.numpy().astype(np.float32), labels.numpy(), 10)
    assert metrics == expected
    # a (predictions, label_ids) tuple works too
    assert compute_metrics((logits.numpy().astype(np.float32), labels.numpy())) == expected


def test_tuple_predictions_take_the_first_element(random_logits):
    logits, labels = random_logits(n=200, c=4)
    features = np.zeros((200, 8), dtype=np.float32)
    compute_metrics = calibration_compute_metrics(n_bins=10, mce_variant="weighted")
    metrics = compute_metrics(_EvalPrediction((logits.numpy(), features), labels.numpy()))
    assert metrics == calibration_report(logits.numpy(), labels.numpy(), 10, mce_variant="weighted")


def test_batch_mode_accumulates_raw_values(random_logits):
    logits, labels = random_logits(n=300, c=4)
    compute_metrics = calibration_compute_metrics(n_bins=10, extras=True)
    chunks = list(range(0, 300, 64))
    for i, start in enumerate(chunks):
        out = compute_metrics(
            _EvalPrediction(logits[start : start + 64], labels[start : start + 64]),
            compute_result=i == len(chunks) - 1,
        )
    expected = calibration_report(logits, labels, 10, extras=True)
    assert out.keys() == expected.keys()
    for key in expected:
        assert out[key] == pytest.approx(expected[key], abs=1e-12)
    # the state is reset after the final batch: a second evaluation starts afresh
    out = compute_metrics(_EvalPrediction(logits[:50], labels[:50]), compute_result=True)
    assert out["n_samples"] == 50


def test_missing_labels_and_bad_options():
    compute_metrics = calibration_compute_metrics()
    with pytest.raises(ValueError, match="label"):
        compute_metrics(_EvalPrediction(np.zeros((2, 3)), None))
    with pytest.raises(ValueError, match="`n_bins`"):
        calibration_compute_metrics(n_bins=0)
    with pytest.raises(ValueError, match="`edge_rule`"):
        calibration_compute_metrics(edge_rule="open")


class _TinyClassifier(nn.Module):
    def __init__(self, n_features: int = 4, n_classes: int = 3, extra_output: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(n_features, n_classes)
        self.extra_output = extra_output

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = 4.0 * self.linear(x)  # deliberately sharp
        out = {"loss": nn.functional.cross_entropy(logits, labels) if labels is not None else None, "logits": logits}
        if self.extra_output:
            out["features"] = x  # makes Trainer hand compute_metrics a (logits, features) tuple
        return out


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


@pytest.mark.slow
@pytest.mark.parametrize(("batch_eval_metrics", "extra_output"), [(False, False), (False, True), (True, False)])
def test_trainer_evaluate_reports_calibration(tmp_path, batch_eval_metrics, extra_output):
    transformers = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 4, generator=g)
    y = torch.randint(0, 3, (150,), generator=g)
    model = _TinyClassifier(extra_output=extra_output)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=32,  # 150 is not a multiple: the last batch is short
        use_cpu=True,
        report_to=[],
        label_names=["labels"],
        batch_eval_metrics=batch_eval_metrics,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model, args=args, eval_dataset=_ListDataset(x, y), compute_metrics=calibration_compute_metrics(n_bins=10)
    )
    metrics = trainer.evaluate()
    with torch.no_grad():
        expected = calibration_report(model(x)["logits"], y, n_bins=10)
    for key in REPORT_KEYS:
        assert metrics[f"eval_{key}"] == pytest.approx(expected[key], abs=1e-5), key
