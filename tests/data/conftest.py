"""Fixtures for the data tests: real ``datasets`` image folders and in-memory datasets, built in temp dirs."""

from __future__ import annotations

import numpy as np
import pytest


def tiny_images_dataset(n_per_class: list[int], names: list[str] | None = None, size: int = 4, seed: int = 0):
    """An in-memory ``datasets.Dataset`` with distinct tiny PNG images (``n_per_class[c]`` rows of class ``c``)."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    names = names or [f"class_{c}" for c in range(len(n_per_class))]
    images, labels = [], []
    for label, n in enumerate(n_per_class):
        for _ in range(n):
            images.append(PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
            labels.append(label)
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> str:
    """A real ``imagefolder`` dataset on disk: train/ (12 per class) and test/ (4 per class), 6 classes, PNG files."""
    from peft_dor.data.synthetic import write_image_folder

    names = ["cat", "dog", "bird", "fish", "horse", "frog"]
    return write_image_folder(tmp_path_factory.mktemp("folder"), names, n_train=12, n_test=4, size=40, seed=3)
