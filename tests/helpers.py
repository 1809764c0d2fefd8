"""Helpers shared across the test packages: the plain-transformers reference model, few-step ``TrainingArguments``
and the generated images (tensor rows for Trainer, PNG ``datasets`` for the data pipeline).

Imported by the test files and by the scripts torchrun starts with the repository on ``PYTHONPATH``,
so it depends on nothing but transformers (torch, numpy, PIL and datasets are imported where used).
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


def pixel_rows(pixel_values, labels) -> list[dict]:
    """Trainer rows ``{"pixel_values", "labels"}`` from a ``(N, 3, H, W)`` tensor and ``N`` labels."""
    return [{"pixel_values": p, "labels": y} for p, y in zip(pixel_values, labels, strict=True)]


def learnable_pixel_rows(n: int, n_classes: int, seed: int = 0, size: int = 32) -> list[dict]:
    """``n`` training rows ``(3, size, size)`` whose class ``i % n_classes`` is noise around a per-class mean, so a few
    steps make progress. Trainer's default collator stacks them."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(n_classes, 3, 1, 1, generator=generator)
    labels = [i % n_classes for i in range(n)]
    pixels = [means[label] + 0.5 * torch.randn(3, size, size, generator=generator) for label in labels]
    return pixel_rows(pixels, labels)


def png_dataset(labels, names, shape=(4, 4), seed: int = 0):
    """An in-memory ``datasets.Dataset`` ``{"image", "label"}`` of distinct random PNG images, one per label."""
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    images = [PILImage.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)) for _ in labels]
    features = Features({"image": Image(), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict({"image": images, "label": list(labels)}, features=features)
