"""Hand-crafted templates of the protocol (docs/data.md): the canonical one per dataset and the per-method variants.

Keys are the Dassl dataset names (``"DescribableTextures"``, ``"OxfordPets"`` ...), as in the original code bases;
:func:`template_for` also accepts the registry's short names (``"dtd"``) through :mod:`peft_dor.data.benchmarks`.

Example:
    >>> from peft_dor.data.templates import template_for
    >>> template_for("dtd")
    '{} texture.'
    >>> template_for("dtd", variant="kgcoop")
    'a photo of a {}, a type of texture.'
"""

from __future__ import annotations

#: The canonical mapping (zero-shot CLIP in CoOp, MaPLe and PromptSRC; the CoOp-family default).
CANONICAL_TEMPLATES: dict[str, str] = {
    "ImageNet": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "OxfordPets": "a photo of a {}, a type of pet.",
    "StanfordCars": "a photo of a {}.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "SUN397": "a photo of a {}.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "UCF101": "a photo of a person doing {}.",
}

#: Per-method differences from the canonical mapping (datasets not listed use the canonical template).
TEMPLATE_VARIANTS: dict[str, dict[str, str]] = {
    # KgCoOp's frozen target features
    "kgcoop": {"DescribableTextures": "a photo of a {}, a type of texture."},
    # TCP's "ori" dict: TKE input and KG target
    "tcp": {
        "FGVCAircraft": "a photo of an aircraft {}.",
        "DescribableTextures": "a photo of a {}, a type of texture.",
        "Food101": "a photo of a {}, a type of food.",
    },
    # ProGrad's zero-shot teacher
    "prograd": {
        "OxfordPets": "a type of pet, a photo of a {}.",
        "OxfordFlowers": "a type of flower, a photo of a {}.",
        "FGVCAircraft": "a type of aircraft, a photo of a {}.",
        "DescribableTextures": "a texture of {}.",
        "Food101": "a type of food, a photo of {}.",
    },
    # the VPT trainer's frozen text side: one template for every dataset
    "vpt": dict.fromkeys(CANONICAL_TEMPLATES, "a photo of a {}."),
}

#: TCP's learnable-prompt layouts (docs/methods/tcp.md): ``X`` marks a learned slot.
TCP_LAYOUTS: dict[str, str] = {
    "OxfordPets": "X X X X {}, a type of pet.",
    "OxfordFlowers": "X X X X {}, a type of flower.",
    "FGVCAircraft": "X X X X {}, a type of aircraft.",
    "DescribableTextures": "X X X X {} texture.",
    "EuroSAT": "X X X X {}.",
    "SUN397": "X X X X {}.",
    "Caltech101": "X X X X {}.",
    "StanfordCars": "X X X X {}, a type of car",  # no final period in the original
    "Food101": "X X X X {}, a type of food.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
}

#: DOR's zero-shot target prefix for outlier words: one generic template for every dataset (docs/dor.md).
DOR_OUTLIER_TEMPLATE = "a photo of a {}."

DEFAULT_TEMPLATE = "a photo of a {}."


def template_for(dataset: str | None, variant: str | None = None) -> str:
    """The hand-crafted template of ``dataset`` (a registry name or Dassl name), optionally a method's variant.

    Args:
        dataset: e.g. ``"dtd"``, ``"DescribableTextures"`` or ``"eurosat"``; ``None`` or an unknown name gives the
            generic ``"a photo of a {}."``.
        variant: ``None`` for the canonical mapping, or one of ``"kgcoop"``, ``"tcp"``, ``"prograd"``, ``"vpt"``.
    """
    if variant is not None and variant.lower() not in TEMPLATE_VARIANTS:
        raise ValueError(
            f"`variant` must be None or one of {sorted(TEMPLATE_VARIANTS)}; got {variant!r}. Datasets a method does "
            "not override use the canonical template."
        )
    if dataset is None:
        return DEFAULT_TEMPLATE
    from .benchmarks import find_benchmark

    info = find_benchmark(dataset)
    key = info.dassl_name if info is not None else dataset
    if variant is not None and key in TEMPLATE_VARIANTS[variant.lower()]:
        return TEMPLATE_VARIANTS[variant.lower()][key]
    return CANONICAL_TEMPLATES.get(key, DEFAULT_TEMPLATE)
