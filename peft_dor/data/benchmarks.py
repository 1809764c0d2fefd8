"""The benchmark registry: the paper's 11 datasets and the ImageNet variants (docs/data.md).

Each entry says how many classes the dataset has (and so its base/new counts), which template it uses, how its raw
class names are cleaned up for prompts, and where the data lives in the standard CoOp folder layout
(``<root>/<dataset_dir>/<image_dir>`` plus a ``split_zhou_<Dataset>.json`` split file). ``docs/data.md`` says per
dataset how to get the data.

Example:
    >>> from peft_dor.data.benchmarks import get_benchmark
    >>> info = get_benchmark("dtd")
    >>> info.dassl_name, info.n_classes, info.n_base, info.n_new
    ('DescribableTextures', 47, 24, 23)
    >>> get_benchmark("eurosat").clean_class_name("SeaLake")
    'Sea or Lake'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .templates import CANONICAL_TEMPLATES

#: Folder layouts the loaders understand (see :mod:`peft_dor.data.loaders`).
LAYOUTS = ("split_zhou", "fgvc_aircraft", "imagenet", "imagenet_v2", "imagenet_variant")


@dataclass(frozen=True)
class BenchmarkInfo:
    """What the protocol says about one dataset.

    Attributes:
        name: registry key, e.g. ``"dtd"``.
        dassl_name: the original code's name, which keys the template tables (``"DescribableTextures"``).
        n_classes: number of classes C; base = ceil(C/2), new = C - base.
        dataset_dir: folder under the data root in the CoOp layout (``"dtd"``).
        image_dir: image folder relative to ``dataset_dir`` (``"images"``); ``""`` for the dataset folder itself.
        layout: how the split is stored (one of :data:`LAYOUTS`).
        split_file: the ``split_zhou_*.json`` file name for the ``"split_zhou"`` layout.
        class_renames: raw folder name -> prompt name (EuroSAT, Caltech101).
        name_rule: an extra clean-up rule: ``"camel_case"`` (UCF101), ``"sun397"``, ``"year_first"`` (StanfordCars).
        ignored_classes: raw class folders the protocol drops (Caltech101's background classes).
        test_only: a domain-generalisation target, never trained on.
        source: where the data comes from (shown in errors and in ``docs/data.md``).
        aliases: other accepted spellings.
    """

    name: str
    dassl_name: str
    n_classes: int
    dataset_dir: str
    image_dir: str
    layout: str = "split_zhou"
    split_file: str | None = None
    class_renames: Mapping[str, str] = field(default_factory=dict)
    name_rule: str | None = None
    ignored_classes: tuple[str, ...] = ()
    test_only: bool = False
    source: str = ""
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}; got {self.layout!r}.")
        if self.layout == "split_zhou" and not self.split_file:
            raise ValueError(f"Benchmark {self.name!r} uses the split_zhou layout but names no `split_file`.")

    @property
    def template(self) -> str:
        """The canonical hand-crafted template (docs/data.md)."""
        return CANONICAL_TEMPLATES[self.dassl_name]

    @property
    def n_base(self) -> int:
        """Number of base classes: ceil(C / 2)."""
        return math.ceil(self.n_classes / 2)

    @property
    def n_new(self) -> int:
        """Number of new classes: C - ceil(C / 2)."""
        return self.n_classes - self.n_base

    def clean_class_name(self, raw: str) -> str:
        """The name that goes into a prompt: this dataset's renames and rule, then ``_`` -> space."""
        return clean_class_name(raw, self)


def _split_camel_case(name: str) -> str:
    # UCF101: "ApplyEyeMakeup" -> "Apply_Eye_Makeup" (CoOp's regex); names that already hold "_" or spaces are clean.
    if "_" in name or " " in name:
        return name
    parts = re.findall("[A-Z][^A-Z]*", name)
    return "_".join(parts) if parts and "".join(parts) == name else name


def _sun397_name(name: str) -> str:
    # "/a/apartment_building/outdoor" or "a/apartment_building/outdoor" -> "outdoor apartment_building"
    # (CoOp drops the first letter and reverses the rest so that words like "outdoor" come first).
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1 and len(parts[0]) == 1:
        parts = parts[1:]
    return " ".join(reversed(parts)) if len(parts) > 1 else (parts[0] if parts else name)


def _year_first(name: str) -> str:
    # Stanford Cars' meta names end with the year ("AM General Hummer SUV 2000"); CoOp moves it to the front.
    words = name.split()
    if len(words) > 1 and re.fullmatch(r"(19|20)\d\d", words[-1]):
        return " ".join([words[-1], *words[:-1]])
    return name


_NAME_RULES = {"camel_case": _split_camel_case, "sun397": _sun397_name, "year_first": _year_first}


def clean_class_name(raw: str, benchmark: BenchmarkInfo | str | None = None) -> str:
    """Turn a raw class name into the name used in prompts (docs/data.md).

    Applies the dataset's renames (EuroSAT, Caltech101) and rule (UCF101 CamelCase, SUN397 category paths, Stanford
    Cars' year), then replaces ``_`` by a space and collapses whitespace. Names that are already clean (for example
    those stored in a ``split_zhou_*.json`` file) pass through unchanged, so applying it twice is harmless.

    Example:
        >>> clean_class_name("golden_retriever")
        'golden retriever'
        >>> clean_class_name("ApplyEyeMakeup", "ucf101")
        'Apply Eye Makeup'
    """
    info = find_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    name = str(raw)
    if info is not None:
        name = info.class_renames.get(name, name)
        if info.name_rule is not None:
            name = _NAME_RULES[info.name_rule](name)
    return " ".join(name.replace("_", " ").split())


_IMAGENET_SOURCE = (
    "ImageNet-1k (https://image-net.org): train and val images in images/train/<wnid>/ and images/val/<wnid>/, plus "
    "CoOp's classnames.txt (one 'wnid name' line per class, CLIP's cleaned names)"
)
_COOP_DRIVE = "split file from CoOp's DATASETS.md (https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"

BENCHMARKS: dict[str, BenchmarkInfo] = {
    info.name: info
    for info in (
        BenchmarkInfo(
            "imagenet",
            "ImageNet",
            1000,
            "imagenet",
            "images",
            layout="imagenet",
            source=_IMAGENET_SOURCE,
            aliases=("imagenet1k", "imagenet-1k"),
        ),
        BenchmarkInfo(
            "caltech101",
            "Caltech101",
            100,
            "caltech-101",
            "101_ObjectCategories",
            split_file="split_zhou_Caltech101.json",
            class_renames={"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"},
            ignored_classes=("BACKGROUND_Google", "Faces_easy"),
            source=f"101_ObjectCategories.tar.gz (https://data.caltech.edu/records/mzrjq-6wc02) + {_COOP_DRIVE}",
            aliases=("caltech-101",),
        ),
        BenchmarkInfo(
            "oxford_pets",
            "OxfordPets",
            37,
            "oxford_pets",
            "images",
            split_file="split_zhou_OxfordPets.json",
            source=f"images.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/ + {_COOP_DRIVE}",
            aliases=("pets", "oxfordpets", "oxford-pets"),
        ),
        BenchmarkInfo(
            "stanford_cars",
            "StanfordCars",
            196,
            "stanford_cars",
            "",
            split_file="split_zhou_StanfordCars.json",
            name_rule="year_first",
            source=f"cars_train/ and cars_test/ (the original Stanford links are often dead) + {_COOP_DRIVE}",
            aliases=("cars", "stanfordcars", "stanford-cars"),
        ),
        BenchmarkInfo(
            "oxford_flowers",
            "OxfordFlowers",
            102,
            "oxford_flowers",
            "jpg",
            split_file="split_zhou_OxfordFlowers.json",
            source="102flowers.tgz from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/, cat_to_name.json and the "
            + _COOP_DRIVE,
            aliases=("flowers102", "flowers", "oxfordflowers", "oxford-flowers"),
        ),
        BenchmarkInfo(
            "food101",
            "Food101",
            101,
            "food-101",
            "images",
            split_file="split_zhou_Food101.json",
            source=f"food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ + {_COOP_DRIVE}",
            aliases=("food-101", "food"),
        ),
        BenchmarkInfo(
            "fgvc_aircraft",
            "FGVCAircraft",
            100,
            "fgvc_aircraft",
            "images",
            layout="fgvc_aircraft",
            source="fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/: move "
            "data/images, variants.txt and images_variant_{train,val,test}.txt into fgvc_aircraft/",
            aliases=("aircraft", "fgvcaircraft", "fgvc-aircraft"),
        ),
        BenchmarkInfo(
            "sun397",
            "SUN397",
            397,
            "sun397",
            "SUN397",
            split_file="split_zhou_SUN397.json",
            name_rule="sun397",
            source=f"SUN397.tar.gz from https://vision.princeton.edu/projects/2010/SUN/ + {_COOP_DRIVE}",
            aliases=("sun",),
        ),
        BenchmarkInfo(
            "dtd",
            "DescribableTextures",
            47,
            "dtd",
            "images",
            split_file="split_zhou_DescribableTextures.json",
            source=f"dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/ + {_COOP_DRIVE}",
            aliases=("describable_textures", "textures"),
        ),
        BenchmarkInfo(
            "eurosat",
            "EuroSAT",
            10,
            "eurosat",
            "2750",
            split_file="split_zhou_EuroSAT.json",
            class_renames={
                "AnnualCrop": "Annual Crop Land",
                "HerbaceousVegetation": "Herbaceous Vegetation Land",
                "Highway": "Highway or Road",
                "Industrial": "Industrial Buildings",
                "Pasture": "Pasture Land",
                "PermanentCrop": "Permanent Crop Land",
                "Residential": "Residential Buildings",
                "SeaLake": "Sea or Lake",
            },
            source=f"EuroSAT (RGB) from https://github.com/phelber/EuroSAT, extracted as 2750/ + {_COOP_DRIVE}",
        ),
        BenchmarkInfo(
            "ucf101",
            "UCF101",
            101,
            "ucf101",
            "UCF-101-midframes",
            split_file="split_zhou_UCF101.json",
            name_rule="camel_case",
            source=f"UCF-101-midframes.zip (the middle frame of every video) from CoOp's DATASETS.md + {_COOP_DRIVE}",
            aliases=("ucf-101",),
        ),
        BenchmarkInfo(
            "imagenet_v2",
            "ImageNetV2",
            1000,
            "imagenetv2",
            "imagenetv2-matched-frequency-format-val",
            layout="imagenet_v2",
            test_only=True,
            source="imagenetv2-matched-frequency.tar.gz from https://github.com/modestyachts/ImageNetV2 (folders "
            "0..999) + a copy of ImageNet's classnames.txt",
            aliases=("imagenetv2", "imagenet-v2"),
        ),
        BenchmarkInfo(
            "imagenet_sketch",
            "ImageNetSketch",
            1000,
            "imagenet-sketch",
            "images",
            layout="imagenet_variant",
            test_only=True,
            source="ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch (images/<wnid>/) + a copy of "
            "ImageNet's classnames.txt",
            aliases=("imagenetsketch", "imagenet-sketch"),
        ),
        BenchmarkInfo(
            "imagenet_a",
            "ImageNetA",
            200,
            "imagenet-adversarial",
            "imagenet-a",
            layout="imagenet_variant",
            test_only=True,
            source="imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples + a copy of ImageNet's "
            "classnames.txt",
            aliases=("imageneta", "imagenet-a", "imagenet_adversarial"),
        ),
        BenchmarkInfo(
            "imagenet_r",
            "ImageNetR",
            200,
            "imagenet-rendition",
            "imagenet-r",
            layout="imagenet_variant",
            test_only=True,
            source="imagenet-r.tar from https://github.com/hendrycks/imagenet-r + a copy of ImageNet's classnames.txt",
            aliases=("imagenetr", "imagenet-r", "imagenet_rendition"),
        ),
    )
}

#: The 11 base-to-new datasets, in the papers' table order.
BASE_TO_NEW_DATASETS: tuple[str, ...] = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
)
#: Domain-generalisation targets (trained on ImageNet).
DOMAIN_GENERALIZATION_TARGETS: tuple[str, ...] = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP: dict[str, str] = {}
for _info in BENCHMARKS.values():
    for _key in (_info.name, _info.dassl_name, *_info.aliases):
        _LOOKUP[_normalise(_key)] = _info.name


def find_benchmark(name: str | BenchmarkInfo | None) -> BenchmarkInfo | None:
    """The registry entry for ``name`` (registry key, Dassl name or alias, any case), or None if unknown."""
    if name is None or isinstance(name, BenchmarkInfo):
        return name
    key = _LOOKUP.get(_normalise(str(name)))
    return None if key is None else BENCHMARKS[key]


def get_benchmark(name: str | BenchmarkInfo) -> BenchmarkInfo:
    """Like :func:`find_benchmark` but raises ``ValueError`` listing the known names when ``name`` is unknown."""
    info = find_benchmark(name)
    if info is None:
        raise ValueError(
            f"Unknown benchmark {name!r}. Known: {', '.join(BENCHMARKS)}. For any other image-classification data "
            "pass an image folder or a Hub dataset id instead (see docs/data.md)."
        )
    return info
