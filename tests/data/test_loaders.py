"""Loaders: the CoOp folder layouts (split files built here, in temp dirs), image folders and split normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from peft_dor.data import (
    build_few_shot_benchmark,
    load_benchmark,
    load_coop_benchmark,
    load_split_file,
    prepare_splits,
    read_classnames,
)

from .conftest import tiny_images_dataset


def _png(path, value: int = 0, size: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def dtd_root(tmp_path):
    """<root>/dtd/images/<class>/*.png + split_zhou_DescribableTextures.json (labels partly stored as strings)."""
    classes = ["banded", "blotchy", "braided"]
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(classes):
        for split_name, count in (("train", 5), ("val", 2), ("test", 3)):
            for i in range(count):
                rel = f"{name}/{name}_{split_name}_{i}.png"
                _png(tmp_path / "dtd" / "images" / rel, value=40 * label + i)
                # CoOp's files sometimes hold the label as a number-like string
                split[split_name].append([rel, str(label) if i % 2 else label, name])
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    return tmp_path


def test_coop_layout_with_split_file(dtd_root):
    splits = load_benchmark("dtd", data_root=dtd_root)
    assert {k: len(v) for k, v in splits.items()} == {"train": 15, "val": 6, "test": 9}
    assert splits["train"].features["label"].names == ["banded", "blotchy", "braided"]
    row = splits["test"][0]
    assert row["image"].size == (6, 6) and row["label"] == 0
    bench = build_few_shot_benchmark(splits, shots=2, seed=1, subsample="new", name="dtd")
    assert bench.class_names == ["braided"] and bench.template == "{} texture."
    assert len(bench.train) == 2 and len(bench.val) == 2 and len(bench.test) == 3


def test_split_file_names_are_cleaned_and_checked(tmp_path):
    images = tmp_path / "imgs"
    _png(images / "a.png")
    split = {"train": [["a.png", 0, "Apply_Eye_Makeup"]], "val": [], "test": [["a.png", 0, "Apply_Eye_Makeup"]]}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    assert load_split_file(path, images, "ucf101")["train"].features["label"].names == ["Apply Eye Makeup"]
    split["test"].append(["a.png", 0, "other"])
    path.write_text(json.dumps(split))
    with pytest.raises(ValueError, match="two class names"):
        load_split_file(path, images)


def test_missing_split_file_says_where_to_get_it(tmp_path):
    (tmp_path / "eurosat" / "2750").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"split_zhou_EuroSAT\.json.*Get it from"):
        load_coop_benchmark("eurosat", tmp_path)


def test_fgvc_aircraft_layout(tmp_path):
    root = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Cessna 172"]
    (root).mkdir()
    (root / "variants.txt").write_text("\n".join(variants) + "\n")
    for split, ids in (("train", ["1", "2", "3"]), ("val", ["4"]), ("test", ["5", "6"])):
        lines = []
        for i, image_id in enumerate(ids):
            _png(root / "images" / f"{image_id}.jpg")
            lines.append(f"{image_id} {variants[i % 3]}")
        (root / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    splits = load_coop_benchmark("fgvc_aircraft", tmp_path)
    assert splits["train"].features["label"].names == variants
    assert list(splits["train"]["label"]) == [0, 1, 2] and len(splits["test"]) == 2


def test_imagenet_variant_layout_scores_its_own_classes(tmp_path):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text(
        "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n"
    )
    for wnid in ("n01443537", "n01484850"):  # ImageNet-R holds a subset of the classes
        _png(tmp_path / "imagenet-rendition" / "imagenet-r" / wnid / "x.png")
    test = load_coop_benchmark("imagenet_r", tmp_path)["test"]
    assert test.features["label"].names == ["goldfish", "great white shark"]
    assert read_classnames(tmp_path / "imagenet" / "classnames.txt")["n01484850"] == "great white shark"


def test_imagenet_layout_tests_on_val(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    (root / "classnames.txt").write_text("n01 tench\nn02 goldfish\n")
    for split, n in (("train", 3), ("val", 1)):
        for wnid in ("n01", "n02"):
            for i in range(n):
                _png(root / "images" / split / wnid / f"{i}.JPEG")
    splits = load_benchmark("imagenet", data_root=tmp_path)
    assert sorted(splits) == ["test", "train"] and len(splits["test"]) == 2 and len(splits["train"]) == 6
    assert splits["train"].features["label"].names == ["tench", "goldfish"]


def test_image_folder_with_benchmark_cleanups(tmp_path):
    for split in ("train", "test"):
        for i, name in enumerate(["AnnualCrop", "SeaLake"]):
            _png(tmp_path / split / name / f"{split}{i}.png", value=i)
    splits = load_benchmark("eurosat", data_dir=tmp_path)
    assert splits["train"].features["label"].names == ["Annual Crop Land", "Sea or Lake"]


def test_image_folder_offline(image_folder):
    splits = load_benchmark(data_dir=image_folder)
    assert sorted(splits) == ["test", "train"]
    assert len(splits["train"]) == 6 * 12 and len(splits["test"]) == 6 * 4
    assert set(splits["train"].features["label"].names) == {"cat", "dog", "bird", "fish", "horse", "frog"}


def test_prepare_splits_picks_columns_and_labelled_test_split():
    from datasets import ClassLabel

    ds = tiny_images_dataset([2, 2], names=["golden_retriever", "tabby_cat"])
    ds = ds.rename_columns({"image": "img", "label": "fine_label"})
    unlabelled = ds.cast_column("fine_label", ClassLabel(names=["golden_retriever", "tabby_cat"]))
    unlabelled = unlabelled.map(lambda _: {"fine_label": -1})  # like Hub ImageNet's test split
    out = prepare_splits({"train": ds, "validation": ds, "test": unlabelled})
    assert sorted(out) == ["test", "train"]  # validation became the test split
    assert out["train"].column_names == ["image", "label"]
    assert out["train"].features["label"].names == ["golden retriever", "tabby cat"]
    assert prepare_splits({"train": ds, "test": ds}, class_names=["dog", "cat"])["test"].features["label"].names == [
        "dog",
        "cat",
    ]
    with pytest.raises(ValueError, match="labelled test split"):
        prepare_splits({"train": ds})


def test_caltech_background_classes_are_dropped():
    ds = tiny_images_dataset([1, 2, 1], names=["BACKGROUND_Google", "airplanes", "Faces_easy"])
    out = prepare_splits({"train": ds, "test": ds}, "caltech101")
    assert out["train"].features["label"].names == ["airplane"] and len(out["test"]) == 2


def test_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one data source"):
        load_benchmark("dtd")


@pytest.mark.parametrize(("drop", "message"), [("image", "no Image column.*image_column"), ("label", "no ClassLabel")])
def test_dataset_without_image_or_label_column_names_the_fix(drop, message):
    ds = tiny_images_dataset([2, 2], names=["cat", "dog"]).remove_columns(drop)
    with pytest.raises(ValueError, match=message):
        prepare_splits({"train": ds, "test": ds})
