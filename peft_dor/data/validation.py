"""Checks of image-classification data that run before any model is loaded.

Some data gives silently meaningless numbers instead of an error: an empty class folder leaves a split with one class
less (one class left reports 100% accuracy and 0 ECE), a test folder with other classes than the training folder
scores the model against the wrong names, and a class with fewer images than the requested shots trains on fewer
examples than the protocol says. :func:`scan_image_folder` reads an image folder and refuses those layouts;
:func:`validate_splits` checks loaded splits (any source); :func:`verify_images` decodes every image.

Example:
    ```python
    from peft_dor.data import load_benchmark
    from peft_dor.data.validation import validate_splits, verify_images

    splits = load_benchmark(data_dir="my_images/")
    validate_splits(splits, shots=16, task="base_to_new")   # ValueError naming the class and split
    verify_images(splits)                                     # ValueError naming the unreadable files
    ```
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

#: file suffixes read as images in an image folder (other files, e.g. a README, are ignored)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: split folder names of an image folder
SPLIT_FOLDERS = ("train", "val", "validation", "test")
#: ``verify_images=None`` decodes every image of data sets up to this size
AUTO_VERIFY_LIMIT = 5000
#: fewest classes per side of a base-to-new split (one class on a side makes accuracy 100% and ECE 0 by construction)
MIN_CLASSES = 2


def _images_in(folder: str) -> list[str]:
    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith(".")]
    return sorted(files)


def _class_folders(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)) and not n.startswith("."))


def scan_image_folder(data_dir: str | os.PathLike) -> dict[str, dict[str, list[str]]]:
    """``{split: {class folder: [image paths]}}`` of an image folder (``train/<class>/*.png``, ``test/<class>/...``).

    A folder without split sub-folders is one ``train`` split. Files other than images are ignored.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        ValueError: no class folders, an empty class folder, or splits with different class folders (each named).
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder not found: {root!r}. See docs/data.md for the expected folder layout.")
    split_dirs = {name: os.path.join(root, name) for name in _class_folders(root) if name in SPLIT_FOLDERS}
    if not split_dirs:
        split_dirs = {"train": root}
    layout: dict[str, dict[str, list[str]]] = {}
    for split, folder in split_dirs.items():
        classes = _class_folders(folder)
        if not classes:
            raise ValueError(
                f"{folder!r} has no class folders; put each class's images in a folder of its own "
                f"({split}/<class name>/<image>), see docs/data.md."
            )
        layout[split] = {name: _images_in(os.path.join(folder, name)) for name in classes}
        empty = [name for name, files in layout[split].items() if not files]
        if empty:
            shown = ", ".join(os.path.join(folder, n) for n in empty[:5]) + (" ..." if len(empty) > 5 else "")
            raise ValueError(
                f"{len(empty)} empty class folder(s) in {split}/: {shown}. Add images or remove the folder; an empty "
                "class silently drops out of the class list."
            )
    reference = "train" if "train" in layout else next(iter(layout))
    expected = set(layout[reference])
    for split, classes in layout.items():
        missing, extra = sorted(expected - set(classes)), sorted(set(classes) - expected)
        if missing or extra:
            parts = ([f"lacks {', '.join(missing[:5])}"] if missing else []) + (
                [f"has extra {', '.join(extra[:5])}"] if extra else []
            )
            raise ValueError(
                f"{os.path.join(root, split)!r} {' and '.join(parts)} compared with {reference}/: every split needs "
                "the same class folders (labels are the folder names)."
            )
    return layout


def _label_counts(dataset: Dataset) -> list[int]:
    import numpy as np

    n = len(dataset.features["label"].names)
    labels = np.asarray(dataset.with_format("numpy")["label"], dtype=np.int64)
    return np.bincount(labels[labels >= 0], minlength=n).tolist()


def validate_splits(
    splits: Mapping[str, Dataset],
    *,
    shots: int = 0,
    task: str = "few_shot",
    splits_needing_every_class: Sequence[str] = ("train", "test"),
) -> None:
    """Refuse splits that would train or score silently wrong.

    Checks: at least two classes (four for ``task="base_to_new"``, two per side); no class without images in
    ``splits_needing_every_class``; at least ``shots`` training images per class; no two classes with the same name
    after normalisation (case and spaces).

    Raises:
        ValueError: naming the classes and splits at fault, and the fix.
    """
    train = splits["train"]
    names = list(train.features["label"].names)
    needed = 2 * MIN_CLASSES if task == "base_to_new" else MIN_CLASSES
    if len(names) < needed:
        raise ValueError(
            f"The training split has {len(names)} class(es) ({', '.join(names)}); {task} needs at least {needed} "
            f"({'two base and two new' if task == 'base_to_new' else 'one class alone always scores 100%'})."
        )
    seen: dict[str, str] = {}
    for name in names:
        key = " ".join(name.replace("_", " ").casefold().split())
        if key in seen:
            raise ValueError(
                f"Classes {seen[key]!r} and {name!r} have the same name after normalisation; rename one of them."
            )
        seen[key] = name
    for split in splits_needing_every_class:
        if split not in splits:
            continue
        counts = _label_counts(splits[split])
        empty = [names[i] for i, count in enumerate(counts) if count == 0]
        if empty:
            raise ValueError(
                f"The {split} split has no images of {len(empty)} class(es): {', '.join(empty[:10])}"
                f"{' ...' if len(empty) > 10 else ''}. Add images of them or remove the classes from every split."
            )
        if split == "train" and shots > 0:
            short = [f"{names[i]} ({count})" for i, count in enumerate(counts) if count < shots]
            if short:
                raise ValueError(
                    f"{len(short)} class(es) have fewer than --shots {shots} training images: "
                    f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}. Lower --shots, or use 0 for all."
                )


def verify_images(splits: Mapping[str, Dataset], limit: int | None = None) -> int:
    """Decode every image of ``splits`` (PIL ``load``), so an unreadable file fails now rather than mid-training.

    Args:
        splits: datasets with an ``image`` column.
        limit: skip the check (return 0) when the splits hold more images than this.

    Returns:
        The number of images decoded.

    Raises:
        ValueError: naming the unreadable files (up to five) and the reason.
    """
    from datasets import Image

    from .transforms import load_image

    total = sum(len(ds) for ds in splits.values())
    if limit is not None and total > limit:
        return 0
    bad: list[str] = []
    for split, dataset in splits.items():
        column = dataset.cast_column("image", Image(decode=False))["image"]
        for index, value in enumerate(column):
            where = value.get("path") if isinstance(value, dict) else None
            try:
                load_image(value).load()
            except Exception as error:  # noqa: BLE001 - any decoder failure is the file's
                bad.append(f"{where or f'{split}[{index}]'} ({type(error).__name__}: {error})")
    if bad:
        raise ValueError(
            f"{len(bad)} image(s) cannot be decoded: {'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Replace or "
            "remove them (--verify_images false skips this check)."
        )
    return total
