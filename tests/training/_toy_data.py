"""A tiny generated image-classification set (one colour per class) and its collator, for end-to-end tests.

Also imported by ``_ddp_train.py``, the script the multi-process tests launch, so it depends on nothing but the
libraries (no pytest).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from peft_dor.testing import TINY_WORDS
from tests.method_cases import CLASS_NAMES

#: terms the DOR tests draw outliers from: the tiny tokenizer's words, phrases, spelling variants of class names
TOY_VOCABULARY = [word for word in TINY_WORDS if word not in CLASS_NAMES] + [
    "Cat",
    "DOG",
    "Bird_",
    "Ship",
    "horse-",
    "red car",
    "blue boat",
    "green tree",
    "yellow kite",
    "apple pizza",
    "river boat",
    "sea ship",
]


def color_dataset(class_names=CLASS_NAMES, per_class: int = 8, size: int = 32, seed: int = 0):
    """A ``datasets.Dataset`` with an ``image`` (PIL) and a ``label`` (ClassLabel) column: class ``i`` is a noisy
    image of the ``i``-th of evenly spaced hues, so a classifier can separate the classes."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(len(class_names)):
        colour = np.array(colorsys.hsv_to_rgb(label / len(class_names), 0.9, 0.9)) * 255
        for _ in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
            images.append(PILImage.fromarray(pixels))
            labels.append(label)
    features = Features({"image": Image(), "label": ClassLabel(names=list(class_names))})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


class ImageCollator:
    """Turns rows with ``image`` and ``label`` into ``pixel_values`` (the CLIP image processor) and ``labels``."""

    def __init__(self, model_path: str):
        from transformers import AutoImageProcessor

        self.processor = AutoImageProcessor.from_pretrained(model_path)

    def __call__(self, rows):
        pixels = self.processor(images=[row["image"].convert("RGB") for row in rows], return_tensors="pt")
        batch = {"pixel_values": pixels["pixel_values"]}
        if "label" in rows[0]:
            batch["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        return batch
