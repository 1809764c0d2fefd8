"""The benchmark registry against the published benchmark tables (numbers typed from the papers' tables, not from the code)."""

from __future__ import annotations

import pytest

from peft_dor.data import BASE_TO_NEW_DATASETS, BENCHMARKS, clean_class_name, find_benchmark, get_benchmark
from peft_dor.data.templates import template_for

# Dassl name, C, base, new (CoCoOp's base-to-new tables)
PROTOCOL_TABLE = {
    "imagenet": ("ImageNet", 1000, 500, 500),
    "caltech101": ("Caltech101", 100, 50, 50),
    "oxford_pets": ("OxfordPets", 37, 19, 18),
    "stanford_cars": ("StanfordCars", 196, 98, 98),
    "oxford_flowers": ("OxfordFlowers", 102, 51, 51),
    "food101": ("Food101", 101, 51, 50),
    "fgvc_aircraft": ("FGVCAircraft", 100, 50, 50),
    "sun397": ("SUN397", 397, 199, 198),
    "dtd": ("DescribableTextures", 47, 24, 23),
    "eurosat": ("EuroSAT", 10, 5, 5),
    "ucf101": ("UCF101", 101, 51, 50),
}

# the canonical templates of CoOp's code
CANONICAL = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet_sketch": "a photo of a {}.",
}


@pytest.mark.parametrize("name", list(PROTOCOL_TABLE))
def test_registry_matches_protocol_table(name):
    info = get_benchmark(name)
    dassl, n_classes, n_base, n_new = PROTOCOL_TABLE[name]
    assert (info.dassl_name, info.n_classes, info.n_base, info.n_new) == (dassl, n_classes, n_base, n_new)


def test_eleven_datasets_in_table_order_and_dg_targets():
    assert list(BASE_TO_NEW_DATASETS) == list(PROTOCOL_TABLE)
    targets = {n: BENCHMARKS[n].n_classes for n in ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")}
    assert targets == {"imagenet_v2": 1000, "imagenet_sketch": 1000, "imagenet_a": 200, "imagenet_r": 200}
    assert all(BENCHMARKS[n].test_only for n in targets)


@pytest.mark.parametrize("name", list(CANONICAL))
def test_canonical_templates(name):
    assert get_benchmark(name).template == CANONICAL[name]
    assert template_for(name) == CANONICAL[name]


def test_template_overrides():
    # a method's own tables are tested in tests/test_registry.py (they live in its folder)
    overrides = {"DescribableTextures": "a texture of {}."}
    assert template_for("dtd", overrides) == "a texture of {}."
    assert template_for("eurosat", overrides) == "a centered satellite photo of {}."  # not overridden
    assert template_for(None) == template_for("not-a-benchmark") == "a photo of a {}."
    with pytest.raises(TypeError, match="overrides"):
        template_for("dtd", "kgcoop")


@pytest.mark.parametrize("spelling", ["dtd", "DTD", "DescribableTextures", "describable_textures"])
def test_lookup_accepts_dassl_names_and_aliases(spelling):
    assert find_benchmark(spelling).name == "dtd"


def test_unknown_benchmark_names_the_known_ones():
    assert find_benchmark("mnist") is None
    with pytest.raises(ValueError, match="Known: imagenet, caltech101"):
        get_benchmark("mnist")


@pytest.mark.parametrize(
    ("raw", "dataset", "expected"),
    [
        ("SeaLake", "eurosat", "Sea or Lake"),
        ("AnnualCrop", "eurosat", "Annual Crop Land"),
        ("Forest", "eurosat", "Forest"),
        ("Sea or Lake", "eurosat", "Sea or Lake"),  # already clean (split files store cleaned names)
        ("airplanes", "caltech101", "airplane"),
        ("Faces", "caltech101", "face"),
        ("dollar_bill", "caltech101", "dollar bill"),
        ("ApplyEyeMakeup", "ucf101", "Apply Eye Makeup"),
        ("Apply_Eye_Makeup", "ucf101", "Apply Eye Makeup"),
        ("YoYo", "ucf101", "Yo Yo"),
        ("/a/apartment_building/outdoor", "sun397", "outdoor apartment building"),
        ("abbey", "sun397", "abbey"),
        ("AM General Hummer SUV 2000", "stanford_cars", "2000 AM General Hummer SUV"),
        ("2000 AM General Hummer SUV", "stanford_cars", "2000 AM General Hummer SUV"),
        ("golden_retriever", None, "golden retriever"),
        ("american_pit_bull_terrier", "oxford_pets", "american pit bull terrier"),
    ],
)
def test_class_name_cleanups(raw, dataset, expected):
    assert clean_class_name(raw, dataset) == expected
    assert clean_class_name(expected, dataset) == expected  # idempotent
