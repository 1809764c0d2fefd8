"""Loaders that turn image-classification data into ``datasets`` splits with prompt-ready class names.

Three ways in, one shape out (a ``DatasetDict`` with ``train``, optionally ``val``, and ``test`` splits, an ``image``
column and a ``label`` ``ClassLabel`` column whose names are cleaned up for prompts):

* :func:`load_coop_benchmark`: the standard CoOp folder layout (``<root>/dtd/images`` + ``split_zhou_*.json``, and
  the ImageNet / FGVC-Aircraft / ImageNet-variant layouts) for the datasets of the registry;
* :func:`load_image_folder`: any local image folder (``<dir>/train/<class>/*.png``, ``<dir>/test/<class>/...``);
* :func:`load_hub_dataset`: a Hub dataset id (or anything ``datasets.load_dataset`` takes).

:func:`load_benchmark` picks one of them from its arguments; :func:`prepare_splits` normalises any ``DatasetDict``
(or in-memory ``Dataset`` pair) the same way.

Example:
    ```python
    from peft_dor.data import load_benchmark

    splits = load_benchmark("eurosat", data_root="~/data")          # CoOp layout
    splits = load_benchmark(data_dir="my_images/")                  # an image folder
    splits = load_benchmark("dtd", dataset_name="user/dtd-copy")    # a Hub copy, with DTD's template and clean-ups
    splits["train"].features["label"].names[:2]
    ```
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .benchmarks import BenchmarkInfo, clean_class_name, find_benchmark, get_benchmark
from .splits import _VAL_SPLITS, relabel

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset, DatasetDict


def _image_features(names: Sequence[str]):
    from datasets import ClassLabel, Features, Image

    return Features({"image": Image(), "label": ClassLabel(names=list(names))})


def _from_items(paths: Sequence[str], labels: Sequence[int], names: Sequence[str]) -> Dataset:
    from datasets import Dataset

    # Only the paths are stored; images are read (and checked) when a row is accessed.
    return Dataset.from_dict(
        {"image": list(paths), "label": [int(y) for y in labels]}, features=_image_features(names)
    )


def _check_exists(path: str, what: str, info: BenchmarkInfo | None = None) -> None:
    if os.path.exists(path):
        return
    hint = f" Get it from: {info.source}." if info is not None and info.source else ""
    raise FileNotFoundError(f"{what} not found: {path!r}.{hint} See docs/data.md for the expected folder layout.")


def _check_unique(names: Sequence[str], where: str) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        key = " ".join(name.casefold().split())
        if key in seen:
            raise ValueError(
                f"Classes {seen[key]} and {i} of {where} have the same prompt name {name!r} after clean-up; "
                "give them distinct names (e.g. with `class_names=`)."
            )
        seen[key] = i


def load_split_file(
    split_path: str | os.PathLike, image_dir: str | os.PathLike, benchmark: BenchmarkInfo | str | None = None
) -> DatasetDict:
    """Read a CoOp ``split_zhou_<Dataset>.json`` file into ``train`` / ``val`` / ``test`` splits.

    The file maps each split to a list of ``[relative_image_path, label, classname]`` triples (labels may be stored
    as numeric strings). Paths are relative to ``image_dir``; class names are the stored ones, with ``_`` -> space.
    """
    from datasets import DatasetDict

    info = find_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    split_path, image_dir = os.fspath(split_path), os.fspath(image_dir)
    _check_exists(split_path, "Split file", info)
    _check_exists(image_dir, "Image folder", info)
    with open(split_path, encoding="utf-8") as f:
        split = json.load(f)
    missing = [s for s in ("train", "test") if s not in split]
    if missing:
        raise ValueError(f"Split file {split_path!r} has no {missing} key(s); it needs 'train', 'val' and 'test'.")
    names: dict[int, str] = {}
    for items in split.values():
        for item in items:
            if len(item) != 3:
                raise ValueError(
                    f"Split file {split_path!r}: every item must be [relative_path, label, classname]; got {item!r}."
                )
            label, name = int(item[1]), str(item[2])
            if names.setdefault(label, name) != name:
                raise ValueError(
                    f"Split file {split_path!r} gives label {label} two class names: {names[label]!r} and {name!r}."
                )
    n_classes = max(names) + 1
    if sorted(names) != list(range(n_classes)):
        raise ValueError(f"Split file {split_path!r}: labels must be 0..C-1 with none missing; got {sorted(names)}.")
    cleaned = [clean_class_name(names[y], info) for y in range(n_classes)]
    _check_unique(cleaned, split_path)
    out = {}
    for split_name in ("train", "val", "test"):
        items = split.get(split_name)
        if items:
            paths = [os.path.join(image_dir, item[0]) for item in items]
            out[split_name] = _from_items(paths, [int(item[1]) for item in items], cleaned)
    if split["train"]:  # one cheap check that the paths resolve; a missing file is reported again when it is read
        _check_exists(os.path.join(image_dir, split["train"][0][0]), "Image", info)
    return DatasetDict(out)


def read_classnames(path: str | os.PathLike) -> dict[str, str]:
    """Read an ImageNet ``classnames.txt`` (``<wnid> <name words>`` per line) into an ordered dict."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(" ")
            if parts and parts[0]:
                out[parts[0]] = " ".join(parts[1:])
    return out


def _listdir(path: str) -> list[str]:
    return sorted(name for name in os.listdir(path) if not name.startswith("."))


def _folder_items(split_dir: str, folders: Sequence[str]) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for label, folder in enumerate(folders):
        class_dir = os.path.join(split_dir, folder)
        for name in _listdir(class_dir):
            paths.append(os.path.join(class_dir, name))
            labels.append(label)
    return paths, labels


def _imagenet_classnames(dataset_dir: str, root: str, info: BenchmarkInfo) -> dict[str, str]:
    for candidate in (os.path.join(dataset_dir, "classnames.txt"), os.path.join(root, "imagenet", "classnames.txt")):
        if os.path.exists(candidate):
            return read_classnames(candidate)
    _check_exists(os.path.join(dataset_dir, "classnames.txt"), "classnames.txt", info)
    raise AssertionError  # pragma: no cover


def _subdirs(path: str) -> list[str]:
    return [name for name in _listdir(path) if os.path.isdir(os.path.join(path, name))]


def load_coop_benchmark(name: str | BenchmarkInfo, data_root: str | os.PathLike) -> DatasetDict:
    """Load a registry dataset from the standard CoOp folder layout under ``data_root``.

    ``data_root`` holds one folder per dataset (``dtd/``, ``eurosat/``, ``imagenet/`` ...) as in CoOp's
    ``DATASETS.md``; ``docs/data.md`` lists each layout. Domain-generalisation targets give a ``test`` split only.
    """
    from datasets import DatasetDict

    info = get_benchmark(name)
    root = os.path.abspath(os.path.expanduser(os.fspath(data_root)))
    dataset_dir = os.path.join(root, info.dataset_dir)
    _check_exists(dataset_dir, f"{info.dassl_name} folder", info)
    image_dir = os.path.join(dataset_dir, info.image_dir) if info.image_dir else dataset_dir
    if info.layout == "split_zhou":
        return load_split_file(os.path.join(dataset_dir, info.split_file), image_dir, info)
    _check_exists(image_dir, "Image folder", info)
    if info.layout == "fgvc_aircraft":
        with open(os.path.join(dataset_dir, "variants.txt"), encoding="utf-8") as f:
            variants = [line.strip() for line in f if line.strip()]
        index = {v: i for i, v in enumerate(variants)}
        out = {}
        for split in ("train", "val", "test"):
            path = os.path.join(dataset_dir, f"images_variant_{split}.txt")
            _check_exists(path, "Split list", info)
            with open(path, encoding="utf-8") as f:
                rows = [line.strip().split(" ", 1) for line in f if line.strip()]
            paths = [os.path.join(image_dir, image_id + ".jpg") for image_id, _ in rows]
            out[split] = _from_items(paths, [index[variant] for _, variant in rows], variants)
        return DatasetDict(out)
    classnames = _imagenet_classnames(dataset_dir, root, info)
    if info.layout == "imagenet":
        out = {}
        for split, folder in (("train", "train"), ("test", "val")):  # the protocol tests on the official val set
            split_dir = os.path.join(image_dir, folder)
            _check_exists(split_dir, f"ImageNet {folder} folder", info)
            folders = _subdirs(split_dir)
            paths, labels = _folder_items(split_dir, folders)
            out[split] = _from_items(paths, labels, [clean_class_name(classnames[w], info) for w in folders])
        return DatasetDict(out)
    if info.layout == "imagenet_v2":
        wnids = list(classnames)
        paths, labels = _folder_items(image_dir, [str(i) for i in range(len(wnids))])
        return DatasetDict({"test": _from_items(paths, labels, [clean_class_name(classnames[w]) for w in wnids])})
    folders = _subdirs(image_dir)  # imagenet_variant: sorted wnid folders, each scored over its own class list
    paths, labels = _folder_items(image_dir, folders)
    return DatasetDict({"test": _from_items(paths, labels, [clean_class_name(classnames[w]) for w in folders])})


def load_image_folder(data_dir: str | os.PathLike, **kwargs) -> DatasetDict:
    """A local image folder: sub-folders ``train/``, ``test/`` (and ``val/``) holding one folder per class.

    The folder is read directly (no "Downloading data" pass over local files) and checked first: an empty class
    folder, or splits whose class folders differ, raise ``ValueError`` naming the folders (see
    :func:`peft_dor.data.validation.scan_image_folder`). With ``kwargs`` (or a ``metadata.csv``/``metadata.jsonl``
    file) the folder goes to ``datasets.load_dataset("imagefolder", data_dir=..., **kwargs)`` instead.
    """
    from datasets import DatasetDict

    from .validation import scan_image_folder

    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    _check_exists(data_dir, "Image folder")
    has_metadata = any(name.startswith("metadata.") for _, _, names in os.walk(data_dir) for name in names)
    if kwargs or has_metadata:
        from datasets import load_dataset

        return load_dataset("imagefolder", data_dir=data_dir, **kwargs)
    out = {}
    for split, classes in scan_image_folder(data_dir).items():
        names = list(classes)
        paths = [path for name in names for path in classes[name]]
        labels = [i for i, name in enumerate(names) for _ in classes[name]]
        out[split] = _from_items(paths, labels, names)
    return DatasetDict(out)


def load_hub_dataset(dataset_name: str, config_name: str | None = None, **kwargs) -> DatasetDict:
    """``datasets.load_dataset(dataset_name, config_name, **kwargs)`` for a Hub id (or a local script/folder)."""
    from datasets import load_dataset

    return load_dataset(dataset_name, config_name, **kwargs)


def _find_column(dataset: Dataset, kind: str, given: str | None) -> str:
    from datasets import ClassLabel, Image

    if given is not None:
        if given not in dataset.column_names:
            raise ValueError(f"Column {given!r} not found; the dataset has {dataset.column_names}.")
        return given
    feature_type = Image if kind == "image" else ClassLabel
    for name, feature in dataset.features.items():
        if isinstance(feature, feature_type):
            return name
    flag = "--image_column" if kind == "image" else "--label_column"
    raise ValueError(
        f"The dataset has no {feature_type.__name__} column (columns: {dataset.features}). Name it with "
        f"`{kind}_column=` ({flag}), or cast it, e.g. ds.cast_column('label', ClassLabel(names=[...]))."
    )


def _has_labels(dataset: Dataset, column: str) -> bool:
    import numpy as np

    labels = np.asarray(dataset.with_format("numpy")[column])
    return len(labels) > 0 and bool((labels >= 0).any())


def prepare_splits(
    splits: Mapping[str, Dataset],
    benchmark: BenchmarkInfo | str | None = None,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    train_split: str = "train",
    test_split: str | None = None,
) -> DatasetDict:
    """Normalise any image-classification splits to ``train`` / ``val`` / ``test`` with ``image`` and ``label``.

    * columns: the first ``Image`` and ``ClassLabel`` features unless named; other columns are dropped;
    * test split: ``"test"`` when it is labelled, else ``"validation"``/``"val"`` (Hub copies of ImageNet have an
      unlabelled test split), unless ``test_split`` names one; a remaining validation split becomes ``val``;
    * class names: ``class_names`` if given (one per label), else the ``ClassLabel`` names cleaned up with the
      benchmark's rules (or just ``_`` -> space); the benchmark's ignored classes are dropped and the rest relabelled;
    * images: grayscale, CMYK and RGBA images are converted to RGB by the transforms, not here.
    """
    from datasets import ClassLabel, DatasetDict

    info = find_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if train_split not in splits:
        raise ValueError(f"No {train_split!r} split; the data has {sorted(splits)}. Name it with `train_split=`.")
    val_candidates = [s for s in _VAL_SPLITS if s in splits and s != test_split]
    if test_split is None:
        if "test" in splits and _has_labels(splits["test"], _find_column(splits["test"], "label", label_column)):
            test_split = "test"
        elif val_candidates:
            test_split = val_candidates.pop(0)
        else:
            raise ValueError(
                f"No labelled test split; the data has {sorted(splits)}. Name one with `test_split=`, or split the "
                "training data first, e.g. ds['train'].train_test_split(test_size=0.2, stratify_by_column='label')."
            )
    elif test_split not in splits:
        raise ValueError(f"`test_split`={test_split!r} not found; the data has {sorted(splits)}.")
    chosen = {"train": splits[train_split], "test": splits[test_split]}
    if val_candidates and val_candidates[0] != train_split:
        chosen["val"] = splits[val_candidates[0]]

    first = chosen["train"]
    image_column = _find_column(first, "image", image_column)
    label_column = _find_column(first, "label", label_column)
    raw_names = list(first.features[label_column].names)
    if class_names is not None:
        if len(class_names) != len(raw_names):
            raise ValueError(
                f"`class_names` has {len(class_names)} names but the label column has {len(raw_names)} classes."
            )
        names = [clean_class_name(n) for n in class_names]
    else:
        names = [clean_class_name(n, info) for n in raw_names]
    ignored = [i for i, n in enumerate(raw_names) if info is not None and n in info.ignored_classes]

    out = {}
    for split, ds in chosen.items():
        ds = ds.select_columns([image_column, label_column])
        if image_column != "image":
            ds = ds.rename_column(image_column, "image")
        if label_column != "label":
            ds = ds.rename_column(label_column, "label")
        if list(ds.features["label"].names) != raw_names:
            raise ValueError(f"Split {split!r} has a different class list from the training split.")
        if names != raw_names:
            ds = ds.cast_column("label", ClassLabel(names=names))
        if ignored:
            ds = relabel(ds, [i for i in range(len(names)) if i not in ignored])
        out[split] = ds
    _check_unique(out["train"].features["label"].names, "the dataset")
    return DatasetDict(out)


def load_benchmark(
    name: str | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    test_split: str | None = None,
    **load_kwargs,
) -> DatasetDict:
    """Load image-classification data as ``train`` / (``val``) / ``test`` splits with prompt-ready class names.

    Exactly one source:

    * ``data_root`` (with a registry ``name``): the CoOp folder layout, e.g. ``<data_root>/dtd/images`` +
      ``split_zhou_DescribableTextures.json``;
    * ``data_dir``: a local image folder (``train/<class>/...``, ``test/<class>/...``);
    * ``dataset_name``: a Hub dataset id (``dataset_config_name`` and ``load_kwargs`` go to ``load_dataset``).

    ``name`` (e.g. ``"eurosat"``) also selects the class-name clean-ups for image folders and Hub copies.
    """
    sources = [s for s in (data_root, data_dir, dataset_name) if s is not None]
    if len(sources) != 1:
        raise ValueError(
            "Give exactly one data source: `data_root` (CoOp layout, with a benchmark `name`), `data_dir` (an image "
            "folder) or `dataset_name` (a Hub dataset id)."
        )
    info = get_benchmark(name) if name is not None and data_root is not None else find_benchmark(name)
    if data_root is not None:
        if info is None:
            raise ValueError("`data_root` (the CoOp layout) needs a benchmark `name`, e.g. 'dtd'.")
        splits = load_coop_benchmark(info, data_root)
        if class_names is None and image_column is None and label_column is None:
            return splits
    elif data_dir is not None:
        splits = load_image_folder(data_dir, **load_kwargs)
    else:
        splits = load_hub_dataset(dataset_name, dataset_config_name, **load_kwargs)
    if info is not None and info.test_only and "train" not in splits:
        return splits
    return prepare_splits(
        splits,
        info,
        image_column=image_column,
        label_column=label_column,
        class_names=class_names,
        test_split=test_split,
    )
