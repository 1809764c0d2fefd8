"""Fixtures for the data tests: real ``datasets`` image folders and in-memory datasets, built in temp dirs."""

from __future__ import annotations

import pytest

from ..helpers import png_dataset


def tiny_images_dataset(n_per_class: list[int], names: list[str] | None = None, size: int = 4, seed: int = 0):
    """``n_per_class[c]`` distinct tiny PNG images of class ``c``, in class order (``tests.helpers.png_dataset``)."""
    labels = [label for label, n in enumerate(n_per_class) for _ in range(n)]
    names = names or [f"class_{c}" for c in range(len(n_per_class))]
    return png_dataset(labels, names, shape=(size, size), seed=seed)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> str:
    """A real ``imagefolder`` dataset on disk: train/ (12 per class) and test/ (4 per class), 6 classes, PNG files."""
    from peft_dor.data.synthetic import write_image_folder

    names = ["cat", "dog", "bird", "fish", "horse", "frog"]
    return write_image_folder(tmp_path_factory.mktemp("folder"), names, n_train=12, n_test=4, size=40, seed=3)
