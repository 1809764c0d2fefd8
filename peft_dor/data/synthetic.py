"""Synthetic image-classification data for the demo, the tests and the docs (no download).

Each class has its own colour and texture (stripes, checks, dots or rings at a class-specific frequency and angle);
every image adds a random offset, jitter and noise. The default class names come from the tiny CLIP vocabulary
(:data:`peft_dor.testing.TINY_WORDS`), so they tokenise to short prompts with the tiny tokenizer.

Example:
    ```python
    from peft_dor.data.synthetic import write_image_folder
    from peft_dor.data import load_benchmark

    path = write_image_folder("/tmp/shapes", n_train=16, n_test=8)
    splits = load_benchmark(data_dir=path)   # train/test splits, 10 classes
    ```
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset
    from PIL import Image as PILImage

#: ten class names that are single tokens of the tiny CLIP tokenizer
DEMO_CLASS_NAMES: tuple[str, ...] = ("cat", "dog", "bird", "fish", "horse", "frog", "deer", "ship", "truck", "car")

_PATTERNS = ("stripes", "checks", "dots", "rings")


def synthetic_image(label: int, n_classes: int, rng: np.random.Generator, size: int = 48) -> PILImage.Image:
    """One RGB image of class ``label`` (of ``n_classes``), randomised by ``rng``."""
    from PIL import Image

    hue = (label / max(n_classes, 1) + rng.normal(0, 0.02)) % 1.0
    fg = np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    bg = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.35, 0.35))
    pattern = _PATTERNS[label % len(_PATTERNS)]
    freq = 2.0 + (label // len(_PATTERNS)) * 1.5 + rng.normal(0, 0.15)
    angle = math.pi * ((label * 0.37) % 1.0) + rng.normal(0, 0.1)
    y, x = np.mgrid[0:size, 0:size] / size
    x, y = x + rng.uniform(0, 1), y + rng.uniform(0, 1)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    if pattern == "stripes":
        mask = np.sin(2 * math.pi * freq * u) > 0
    elif pattern == "checks":
        mask = (np.floor(freq * u) + np.floor(freq * v)) % 2 == 0
    elif pattern == "dots":
        mask = (np.sin(2 * math.pi * freq * u) * np.sin(2 * math.pi * freq * v)) > 0.4
    else:
        mask = np.sin(2 * math.pi * freq * np.hypot(x - x.mean(), y - y.mean())) > 0
    image = np.where(mask[..., None], fg, bg) + rng.normal(0, 0.06, (size, size, 3))
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), mode="RGB")


def synthetic_images(
    n_per_class: int, class_names: Sequence[str] = DEMO_CLASS_NAMES, seed: int = 0, size: int = 48
) -> Iterator[tuple[int, PILImage.Image]]:
    """``(label, image)`` pairs, ``n_per_class`` per class, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    for label in range(len(class_names)):
        for _ in range(n_per_class):
            yield label, synthetic_image(label, len(class_names), rng, size)


def write_image_folder(
    root: str | os.PathLike,
    class_names: Sequence[str] = DEMO_CLASS_NAMES,
    *,
    n_train: int = 16,
    n_test: int = 8,
    n_val: int = 0,
    size: int = 48,
    seed: int = 0,
) -> str:
    """Write ``root/{train,val,test}/<class>/<i>.png`` (an ``imagefolder`` dataset) and return ``root``.

    Already complete folders (same file count) are reused, so repeated runs and several processes can share one.
    """
    root = Path(root)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    marker = root / ".complete"
    expected = f"{list(class_names)}|{counts}|{size}|{seed}"
    if marker.exists() and marker.read_text() == expected:
        return str(root)
    for offset, (split, n) in enumerate(counts.items()):
        if n <= 0:
            continue
        for label, image in _indexed(synthetic_images(n, class_names, seed * 1000 + offset, size), n):
            folder = root / split / class_names[label[0]]
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{label[1]:04d}.png")
    marker.write_text(expected)
    return str(root)


def _indexed(pairs: Iterator[tuple[int, PILImage.Image]], n: int) -> Iterator[tuple[tuple[int, int], PILImage.Image]]:
    for i, (label, image) in enumerate(pairs):
        yield (label, i % n), image


def synthetic_dataset(
    n_per_class: int, class_names: Sequence[str] = DEMO_CLASS_NAMES, *, seed: int = 0, size: int = 48
) -> Dataset:
    """An in-memory ``datasets.Dataset`` with an ``image`` column and a ``label`` ``ClassLabel`` column."""
    from datasets import ClassLabel, Dataset, Features, Image

    labels, images = [], []
    for label, image in synthetic_images(n_per_class, class_names, seed, size):
        labels.append(label)
        images.append(image)
    features = Features({"image": Image(), "label": ClassLabel(names=list(class_names))})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)
