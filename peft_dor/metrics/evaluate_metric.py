# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Calibration metrics as an ``evaluate.Metric`` that works offline, without the Hub.

Importing this module imports ``evaluate`` (and ``datasets``), which takes seconds; ``peft_dor.metrics`` therefore
exposes :class:`CalibrationMetric` lazily.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np

from .functional import (
    EDGE_RULES,
    MCE_VARIANTS,
    EdgeRule,
    MCEVariant,
    calibration_report,
    check_choice,
    check_from_logits,
    check_n_bins,
)

__all__ = ["CalibrationMetric"]

_DESCRIPTION = """\
Top-label calibration of a classifier: expected calibration error (ECE, equal-width bins), maximum calibration error
(MCE), adaptive ECE (ACE, equal-mass bins), negative log-likelihood (NLL), multiclass Brier score and accuracy, all
from one softmax over the whole evaluation set. Calibration errors and accuracy are fractions in [0, 1] (papers print
them x100). Bins are [b/M, (b+1)/M) with the last one closed, so a confidence of exactly 1.0 falls in the last bin.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: logits or probabilities, one row of C floats per sample. Rows that lie in [0, 1] and sum to 1 are
        taken as probabilities unless `from_logits` says otherwise; anything else is soft-maxed.
    references: integer class index per sample.
    n_bins (int): number of bins (default: the value given at construction, 15 unless set; the DOR paper uses 10).
    mce_variant (str): "standard" (max over bins of |acc - conf|) or "weighted" (count-weighted, the DOR code's).
    edge_rule (str): "standard" or "lab" (the DOR authors' treatment of confidences of exactly 1.0).
    from_logits (bool or None): True for logits, False for probabilities, None to detect.
    extras (bool): also return rmsce, confidence, n_bins and n_samples.
Returns:
    accuracy, ece, mce, ace (fractions in [0, 1]), nll (nats) and brier (in [0, 2]).
Examples:
    >>> from peft_dor.metrics import CalibrationMetric
    >>> metric = CalibrationMetric(n_bins=10)
    >>> metric.add_batch(predictions=[[2.0, 0.0], [0.0, 1.0]], references=[0, 0])
    >>> sorted(metric.compute())
    ['accuracy', 'ace', 'brier', 'ece', 'mce', 'nll']
"""

_CITATION = """\
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML},
  year={2017}
}
@inproceedings{nixon2019measuring,
  title={Measuring Calibration in Deep Learning},
  author={Nixon, Jeremy and Dusenberry, Michael W. and Zhang, Linchuan and Jerfel, Ghassen and Tran, Dustin},
  booktitle={CVPR Workshops},
  year={2019}
}
"""

_UNSET: Any = object()


def _float_list_feature() -> Any:
    # datasets >= 4 spells a variable-length list `List`; older versions only have `Sequence`.
    list_type = getattr(datasets, "List", None) or datasets.Sequence
    return list_type(datasets.Value("float32"))


class CalibrationMetric(evaluate.Metric):
    """ECE, MCE, adaptive ECE, NLL, Brier and accuracy as an ``evaluate.Metric``, in memory by default.

    A thin wrapper over :func:`~peft_dor.metrics.calibration_report`: ``add``/``add_batch`` collect the prediction
    rows and labels, ``compute`` bins the whole set at once (never per batch). It is constructed directly, so it
    needs no Hub access, no script copy and no module cache; ``keep_in_memory=True`` is the default because under
    DDP every rank runs ``compute_metrics`` and on-disk metric instances contend for one Arrow cache-file lock.
    The same metric loads as a script with ``evaluate.load(CALIBRATION_METRIC_PATH, keep_in_memory=True)``.

    Inputs pass through Arrow as float32, so results match the float64 functional core to about 1e-7.

    Args:
        n_bins: Default number of bins (overridable in ``compute``).
        mce_variant: Default MCE variant, ``"standard"`` or ``"weighted"``.
        edge_rule: Default bin-edge rule, ``"standard"`` or ``"lab"``.
        from_logits: Default input rule: ``True``, ``False`` or ``None`` (detect).
        extras: Also return ``rmsce``, ``confidence``, ``n_bins`` and ``n_samples`` by default.
        keep_in_memory: Keep the collected predictions in memory instead of an Arrow cache file. ``None`` (default)
            means ``True``, except with evaluate's file-based multi-process mode (``num_process > 1``), which needs
            the cache files.
        **kwargs: Passed to ``evaluate.Metric`` (``experiment_id``, ``num_process``, ``process_id``, ...).

    Example:
        >>> metric = CalibrationMetric(n_bins=10)
        >>> for logits, labels in [([[2.0, 0.0], [0.0, 1.0]], [0, 0]), ([[0.0, 3.0]], [1])]:
        ...     metric.add_batch(predictions=logits, references=labels)
        >>> round(metric.compute()["accuracy"], 4)
        0.6667
    """

    def __init__(
        self,
        n_bins: int = 15,
        *,
        mce_variant: MCEVariant = "standard",
        edge_rule: EdgeRule = "standard",
        from_logits: bool | None = None,
        extras: bool = False,
        keep_in_memory: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.n_bins = check_n_bins(n_bins)
        self.mce_variant = check_choice(mce_variant, MCE_VARIANTS, "mce_variant")
        self.edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
        self.from_logits = check_from_logits(from_logits)
        self.extras = bool(extras)
        if keep_in_memory is None:
            # evaluate's own multi-process mode (num_process > 1) exchanges data through the cache files.
            keep_in_memory = kwargs.get("num_process", 1) == 1
        super().__init__(keep_in_memory=keep_in_memory, **kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _float_list_feature(), "references": datasets.Value("int64")}),
            reference_urls=["https://arxiv.org/abs/1706.04599", "https://arxiv.org/abs/1904.01685"],
        )

    def _compute(
        self,
        predictions: Any,
        references: Any,
        n_bins: int = _UNSET,
        mce_variant: MCEVariant = _UNSET,
        edge_rule: EdgeRule = _UNSET,
        from_logits: bool | None = _UNSET,
        extras: bool = _UNSET,
    ) -> dict[str, float]:
        # evaluate's "numpy" format only supports scalar features, so rows arrive as Python lists.
        lengths = {len(row) for row in predictions}
        if len(lengths) > 1:
            raise ValueError(f"`predictions` rows must all have the same number of classes, got {sorted(lengths)}.")
        preds = np.asarray(predictions, dtype=np.float64)
        return calibration_report(
            preds,
            np.asarray(references),
            self.n_bins if n_bins is _UNSET else n_bins,
            mce_variant=self.mce_variant if mce_variant is _UNSET else mce_variant,
            edge_rule=self.edge_rule if edge_rule is _UNSET else edge_rule,
            from_logits=self.from_logits if from_logits is _UNSET else from_logits,
            extras=self.extras if extras is _UNSET else extras,
        )
