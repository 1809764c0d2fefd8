"""Few-shot sampling and the base/new split, on real in-memory ``datasets``."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from peft_dor.data import (
    base_to_new_benchmarks,
    build_few_shot_benchmark,
    few_shot_indices,
    image_keys,
    sample_few_shot,
    split_base_new,
    subsample_classes,
)

from .conftest import tiny_images_dataset

# the 11 datasets' class counts -> (base, new)
CLASS_COUNTS = {
    1000: (500, 500),
    100: (50, 50),
    37: (19, 18),
    196: (98, 98),
    102: (51, 51),
    101: (51, 50),
    397: (199, 198),
    47: (24, 23),
    10: (5, 5),
}


def _keys_of(dataset) -> list[str]:
    return image_keys(dataset)


def test_few_shot_indices_follow_dassl_random_sample():
    # Hand reference: classes in sorted order, items sorted by key, one `random.sample` per class from one stream.
    labels = [1, 0, 1, 0, 1, 0, 1]
    keys = ["g", "c", "e", "a", "f", "b", "d"]
    rng = random.Random(7)
    expected = []
    for _label, members in ((0, [3, 5, 1]), (1, [6, 2, 4, 0])):  # indices sorted by key within each class
        expected += rng.sample(members, 2)
    assert few_shot_indices(labels, keys, 2, random.Random(7)) == expected


def test_small_classes_keep_everything_and_zero_shots_keeps_all():
    labels, keys = [0, 0, 0, 1], ["a", "b", "c", "d"]
    chosen = few_shot_indices(labels, keys, 2, random.Random(0))
    assert sorted(chosen[2:]) == [3] and len(chosen) == 3
    assert few_shot_indices(labels, keys, 0, random.Random(0)) == [0, 1, 2, 3]


def test_sampling_is_deterministic_and_seed_dependent():
    ds = tiny_images_dataset([6, 6, 6])
    a = _keys_of(sample_few_shot(ds, 2, seed=1))
    assert a == _keys_of(sample_few_shot(ds, 2, seed=1))
    assert len(a) == 6 and len(set(a)) == 6
    assert any(_keys_of(sample_few_shot(ds, 2, seed=s)) != a for s in (2, 3, 4))


def test_sampling_is_independent_of_row_order():
    ds = tiny_images_dataset([5, 7, 4, 6])
    shuffled = ds.shuffle(seed=123).flatten_indices()
    for seed in (1, 2, 3):
        assert _keys_of(sample_few_shot(ds, 3, seed=seed)) == _keys_of(sample_few_shot(shuffled, 3, seed=seed))


def test_image_folder_keys_are_paths(image_folder):
    from peft_dor.data import load_benchmark

    train = load_benchmark(data_dir=image_folder)["train"]
    keys = image_keys(train)
    assert all(k.startswith(image_folder) and k.endswith(".png") for k in keys)
    # reversed rows give the same draw
    reversed_rows = train.select(range(len(train) - 1, -1, -1))
    assert _keys_of(sample_few_shot(train, 4, seed=1)) == _keys_of(sample_few_shot(reversed_rows, 4, seed=1))


def test_split_base_new_is_ceil_half_of_sorted_labels():
    assert split_base_new([3, 1, 2, 0, 4]) == ([0, 1, 2], [3, 4])
    assert split_base_new([0, 1]) == ([0], [1])


@pytest.mark.parametrize(("n_classes", "expected"), sorted(CLASS_COUNTS.items()))
def test_base_new_counts_match_the_protocol(n_classes, expected):
    # one 2x2 image per class keeps this fast even with 1000 classes
    ds = tiny_images_dataset([1] * n_classes, size=2)
    splits = {"train": ds, "test": ds}
    base = subsample_classes(splits, "base")
    new = subsample_classes(splits, "new")
    n_base = len(base["train"].features["label"].names)
    n_new = len(new["test"].features["label"].names)
    assert (n_base, n_new) == expected == (math.ceil(n_classes / 2), n_classes - math.ceil(n_classes / 2))


def test_relabelling_from_zero_and_names_follow():
    names = ["e", "d", "c", "b", "a"]
    ds = tiny_images_dataset([2, 1, 3, 1, 2], names=names)
    out = subsample_classes({"train": ds, "test": ds}, "new")
    test = out["test"]
    assert test.features["label"].names == ["b", "a"]  # original labels 3 and 4
    assert sorted(test["label"]) == [0, 1, 1]
    # the same image keeps its class: original label 4 -> new label 1
    original = {k: names[y] for k, y in zip(image_keys(ds), ds["label"], strict=True)}
    for key, label in zip(image_keys(test), test["label"], strict=True):
        assert original[key] == test.features["label"].names[label]
    assert subsample_classes({"train": ds}, "all")["train"] is not None
    with pytest.raises(ValueError, match="subsample"):
        subsample_classes({"train": ds}, "novel")


def test_build_benchmark_draws_val_after_train_and_subsamples_after_the_draw():
    ds = tiny_images_dataset([8] * 5, names=["v", "w", "x", "y", "z"])
    val = tiny_images_dataset([6] * 5, names=["v", "w", "x", "y", "z"], seed=1)
    splits = {"train": ds, "val": val, "test": ds}
    bench = build_few_shot_benchmark(splits, shots=4, seed=2, subsample="base", name="dtd")
    assert bench.class_names == ["v", "w", "x"] and bench.template == "{} texture."
    assert len(bench.train) == 3 * 4 and len(bench.val) == 3 * 4 and len(bench.test) == 3 * 8
    # reference: one stream, train over all 5 classes first, then val with min(4, 4) shots
    rng = random.Random(2)
    train_idx = few_shot_indices(ds["label"], image_keys(ds), 4, rng)
    val_idx = few_shot_indices(val["label"], image_keys(val), 4, rng)
    keys, val_keys = image_keys(ds), image_keys(val)
    base_labels = {0, 1, 2}
    assert image_keys(bench.train) == [keys[i] for i in train_idx if ds["label"][i] in base_labels]
    assert image_keys(bench.val) == [val_keys[i] for i in val_idx if val["label"][i] in base_labels]


def test_base_to_new_sides_share_one_draw():
    ds = tiny_images_dataset([5] * 7)
    base, new = base_to_new_benchmarks({"train": ds, "test": ds}, shots=2, seed=3)
    assert len(base.class_names) == 4 and len(new.class_names) == 3
    assert set(base.class_names).isdisjoint(new.class_names)
    assert sorted(np.unique(new.test["label"])) == [0, 1, 2]
    assert "classes=4" in repr(base) and "subsample='new'" in repr(new)
