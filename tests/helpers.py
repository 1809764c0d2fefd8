"""Helpers shared across the test packages: the plain-transformers reference model and few-step ``TrainingArguments``.

Imported by the test files and by the scripts torchrun starts with the repository on ``PYTHONPATH``),
so it depends on nothing but transformers.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=4)
def reference_clip(path: str):
    """Plain transformers ``(CLIPModel, tokenizer)`` from ``path``, loaded once: the independent reference (never
    wrapped by PEFT, never trained)."""
    from transformers import AutoTokenizer, CLIPModel

    return CLIPModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def tiny_training_args(output_dir: str, **overrides):
    """CPU ``TrainingArguments`` that keep image tensors, save nothing and report to nobody; ``overrides`` win."""
    from transformers import TrainingArguments

    settings = {
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "remove_unused_columns": False,
        "disable_tqdm": True,
        "seed": 0,
    }
    return TrainingArguments(output_dir=output_dir, **{**settings, **overrides})
