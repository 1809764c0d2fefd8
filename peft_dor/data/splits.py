"""Few-shot sampling and the base/new class split of the protocol (docs/data.md).

* :func:`sample_few_shot` draws ``k`` items per class with Python's ``random.sample``. Items of a class are put in a
  canonical order (by their image path, or a hash of the image bytes) before the draw, so the result depends only on
  the seed and the data, never on the order of the rows.
* :func:`subsample_classes` keeps the base (first ``ceil(C/2)`` sorted labels) or new classes and relabels them from 0.
* :func:`build_few_shot_benchmark` does both, in the protocol's order: few-shot draw over all classes (train, then
  val with ``min(k, 4)`` shots from the same random stream), then the base/new subsampling.

Example:
    ```python
    from peft_dor.data import build_few_shot_benchmark, load_benchmark

    splits = load_benchmark("dtd", data_root="~/data")
    base = build_few_shot_benchmark(splits, shots=16, seed=1, subsample="base", name="dtd")
    base.class_names[:3], len(base.train)  # 24 base classes, 24 * 16 images
    ```
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset, DatasetDict

SUBSAMPLE_MODES = ("all", "base", "new")
_VAL_SPLITS = ("val", "validation", "valid")


def _labels(dataset: Dataset, label_column: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[label_column], dtype=np.int64)


def image_keys(dataset: Dataset, image_column: str = "image", key_column: str | None = None) -> list[str]:
    """A key per row that identifies its image independently of the row order.

    The stored file path when the image column has one (image folders, split files), else a SHA-1 of the encoded
    image bytes; ``key_column`` uses that column's values instead (e.g. an image id).
    """
    if key_column is not None:
        return [str(v) for v in dataset[key_column]]
    import pyarrow as pa

    keys: list[str] = []
    # The Arrow view holds the raw {bytes, path} structs: nothing is decoded and only this column is read.
    view = dataset.select_columns([image_column]).with_format("arrow")
    for batch in view.iter(batch_size=4096):
        column = batch.column(image_column)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if not pa.types.is_struct(column.type):
            keys.extend(hashlib.sha1(repr(v).encode()).hexdigest() for v in column.to_pylist())
            continue
        paths = column.field("path").to_pylist()
        data = column.field("bytes")
        for i, path in enumerate(paths):
            if path is None:
                raw = data[i].as_py() or b""
                keys.append("sha1:" + hashlib.sha1(raw).hexdigest())
            else:
                keys.append(str(path))
    return keys


def few_shot_indices(labels: Sequence[int], keys: Sequence[str], shots: int, rng: random.Random) -> list[int]:
    """Indices of ``shots`` items per label, drawn with ``rng.sample`` from the items sorted by key.

    Labels are visited in sorted order; a class with fewer than ``shots`` items keeps all of them (Dassl's default,
    no repetition). ``shots < 1`` keeps everything.

    Example:
        >>> few_shot_indices([0, 0, 1, 1, 1], ["a", "b", "c", "d", "e"], 1, random.Random(1))
        [0, 3]
    """
    labels = np.asarray(labels, dtype=np.int64)
    if shots < 1:
        return list(range(len(labels)))
    if len(keys) != len(labels):
        raise ValueError(f"Got {len(keys)} keys for {len(labels)} labels; pass one key per row.")
    chosen: list[int] = []
    for label in np.unique(labels):
        members = sorted(np.flatnonzero(labels == label).tolist(), key=lambda i: (keys[i], i))
        chosen.extend(rng.sample(members, shots) if len(members) >= shots else members)
    return chosen


def sample_few_shot(
    dataset: Dataset,
    shots: int,
    seed: int | None = None,
    *,
    rng: random.Random | None = None,
    label_column: str = "label",
    image_column: str = "image",
    key_column: str | None = None,
) -> Dataset:
    """``shots`` rows per class of ``dataset``, drawn by a seeded sampler that does not depend on the row order.

    Args:
        dataset: an image-classification ``datasets.Dataset``.
        shots: items per class (``< 1``: keep everything).
        seed: seed of a fresh ``random.Random``; give either ``seed`` or ``rng``.
        rng: a shared ``random.Random`` (the protocol draws train and then val shots from one stream).
        label_column / image_column: column names.
        key_column: a column whose values identify rows (default: image path or bytes hash).
    """
    if (seed is None) == (rng is None):
        raise ValueError("Pass exactly one of `seed` (an int) and `rng` (a random.Random).")
    rng = random.Random(seed) if rng is None else rng
    if shots < 1:
        return dataset
    labels = _labels(dataset, label_column)
    keys = image_keys(dataset, image_column, key_column)
    return dataset.select(few_shot_indices(labels, keys, shots, rng))


def split_base_new(labels: Sequence[int]) -> tuple[list[int], list[int]]:
    """Base and new labels: the first ``ceil(C/2)`` of the sorted unique labels, and the rest.

    Example:
        >>> split_base_new([4, 0, 2, 1, 3])
        ([0, 1, 2], [3, 4])
    """
    unique = sorted({int(y) for y in labels})
    m = math.ceil(len(unique) / 2)
    return unique[:m], unique[m:]


def relabel(dataset: Dataset, keep: Sequence[int], label_column: str = "label") -> Dataset:
    """Keep the rows whose label is in ``keep`` and relabel them ``0..len(keep)-1`` in the order of ``keep``.

    The label column becomes a ``ClassLabel`` over the kept classes' names.
    """
    from datasets import ClassLabel

    keep = [int(y) for y in keep]
    old = dataset.features[label_column]
    names = [old.names[y] for y in keep] if isinstance(old, ClassLabel) else [str(y) for y in keep]
    labels = _labels(dataset, label_column)
    mapping = np.full(max(int(labels.max(initial=0)), max(keep, default=0)) + 1, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    # negative labels (unlabelled rows) are never kept
    dataset = dataset.select(np.flatnonzero((labels >= 0) & (mapping[np.maximum(labels, 0)] >= 0)))
    features = dataset.features.copy()
    features[label_column] = ClassLabel(names=names)
    return dataset.map(
        lambda y: {label_column: mapping[np.asarray(y, dtype=np.int64)].tolist()},
        input_columns=label_column,
        batched=True,
        features=features,
        desc="Relabelling classes",
    )


def subsample_classes(
    splits: Mapping[str, Dataset], subsample: str = "all", label_column: str = "label"
) -> DatasetDict:
    """Keep the base or new classes of every split and relabel them from 0 (docs/data.md).

    The classes are decided on the ``"train"`` split: its sorted unique labels, first ``ceil(C/2)`` base, rest new.

    Args:
        splits: ``{"train": ..., "val": ..., "test": ...}`` (val optional).
        subsample: ``"base"``, ``"new"`` or ``"all"`` (no change).
    """
    from datasets import DatasetDict

    if subsample not in SUBSAMPLE_MODES:
        raise ValueError(f"`subsample` must be one of {SUBSAMPLE_MODES}; got {subsample!r}.")
    if "train" not in splits:
        raise ValueError(f"`splits` needs a 'train' split to decide the base/new classes; got {sorted(splits)}.")
    if subsample == "all":
        return DatasetDict(dict(splits))
    base, new = split_base_new(_labels(splits["train"], label_column))
    keep = base if subsample == "base" else new
    return DatasetDict({name: relabel(ds, keep, label_column) for name, ds in splits.items()})


@dataclass
class FewShotBenchmark:
    """One side of a benchmark run: few-shot train (and val) data, the test data and the classes, all relabelled.

    Attributes:
        train: few-shot training rows (``shots`` per class).
        test: the full test split of the chosen classes.
        class_names: prompt-ready names, index = label.
        template: the dataset's hand-crafted template.
        val: few-shot val rows (``min(shots, 4)`` per class) or None.
        name / subsample / shots / seed: what was built.
    """

    train: Dataset
    test: Dataset
    class_names: list[str]
    template: str = "a photo of a {}."
    val: Dataset | None = None
    name: str | None = None
    subsample: str = "all"
    shots: int = 16
    seed: int = 1
    label_column: str = field(default="label", repr=False)
    image_column: str = field(default="image", repr=False)

    def __repr__(self) -> str:
        val = "None" if self.val is None else len(self.val)
        return (
            f"FewShotBenchmark(name={self.name!r}, subsample={self.subsample!r}, shots={self.shots}, seed={self.seed}, "
            f"classes={len(self.class_names)}, train={len(self.train)}, val={val}, test={len(self.test)})"
        )


def build_few_shot_benchmark(
    splits: Mapping[str, Dataset],
    *,
    shots: int = 16,
    seed: int = 1,
    subsample: str = "base",
    val_shots: int | None = None,
    template: str | None = None,
    name: str | None = None,
    label_column: str = "label",
    image_column: str = "image",
) -> FewShotBenchmark:
    """Few-shot draw over all classes, then the base/new subsampling, as the protocol does.

    Args:
        splits: ``train`` and ``test`` (and optionally ``val``/``validation``) datasets with a ``ClassLabel`` column,
            e.g. from :func:`~peft_dor.data.load_benchmark`.
        shots: training shots per class (16 in the protocol; ``< 1`` keeps all training data).
        seed: run seed (1, 2, 3 in the protocol).
        subsample: ``"base"``, ``"new"`` or ``"all"``.
        val_shots: val shots per class; default ``min(shots, 4)``.
        template: defaults to the registry template of ``name`` (``"a photo of a {}."`` if unknown).
        name: benchmark name, e.g. ``"dtd"``.
    """
    from .templates import template_for

    if "train" not in splits or "test" not in splits:
        raise ValueError(f"`splits` needs 'train' and 'test' splits; got {sorted(splits)}.")
    rng = random.Random(seed)
    out = {
        "train": sample_few_shot(splits["train"], shots, rng=rng, label_column=label_column, image_column=image_column)
    }
    val_name = next((s for s in _VAL_SPLITS if s in splits), None)
    if val_name is not None:
        k = min(shots, 4) if val_shots is None else val_shots
        out["val"] = sample_few_shot(
            splits[val_name], k, rng=rng, label_column=label_column, image_column=image_column
        )
    out["test"] = splits["test"]
    out = subsample_classes(out, subsample, label_column)
    return FewShotBenchmark(
        train=out["train"],
        test=out["test"],
        val=out.get("val"),
        class_names=list(out["train"].features[label_column].names),
        template=template if template is not None else template_for(name),
        name=name,
        subsample=subsample,
        shots=shots,
        seed=seed,
        label_column=label_column,
        image_column=image_column,
    )


def base_to_new_benchmarks(
    splits: Mapping[str, Dataset], *, shots: int = 16, seed: int = 1, **kwargs
) -> tuple[FewShotBenchmark, FewShotBenchmark]:
    """The base side (train + base test) and the new side (new test) of one base-to-new run.

    Both sides come from the same few-shot draw, so the new side's class list is exactly the classes left out of
    training.
    """
    base = build_few_shot_benchmark(splits, shots=shots, seed=seed, subsample="base", **kwargs)
    new = build_few_shot_benchmark(splits, shots=shots, seed=seed, subsample="new", **kwargs)
    return base, new
