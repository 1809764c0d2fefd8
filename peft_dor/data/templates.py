"""Hand-crafted templates of the protocol (docs/data.md): the canonical one per dataset.

A method whose code uses other templates declares its own table on its ``MethodSpec`` (``templates``, in its folder
``peft_dor/tuners/<method>/templates.py``); ``method_spec(name).template_for(dataset)`` applies it over this one.

Keys are the Dassl dataset names (``"DescribableTextures"``, ``"OxfordPets"`` ...), as in the original code bases;
:func:`template_for` also accepts the registry's short names (``"dtd"``) through :mod:`peft_dor.data.benchmarks`.

Example:
    >>> from peft_dor.data.templates import template_for
    >>> template_for("dtd")
    '{} texture.'
    >>> template_for("dtd", overrides={"DescribableTextures": "a texture of {}."})
    'a texture of {}.'
"""

from __future__ import annotations

from collections.abc import Mapping

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

#: DOR's zero-shot target prefix for outlier words: one generic template for every dataset (docs/dor.md).
DOR_OUTLIER_TEMPLATE = "a photo of a {}."

DEFAULT_TEMPLATE = "a photo of a {}."


def template_for(dataset: str | None, overrides: Mapping[str, str] | None = None) -> str:
    """The hand-crafted template of ``dataset`` (a registry name or Dassl name), optionally with a method's overrides.

    Args:
        dataset: e.g. ``"dtd"``, ``"DescribableTextures"`` or ``"eurosat"``; ``None`` or an unknown name gives the
            generic ``"a photo of a {}."``.
        overrides: ``None`` for the canonical mapping, or a table of Dassl name -> template that takes precedence
            (a method's ``MethodSpec.templates``).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(
            f"`overrides` must be None or a dict of Dassl dataset name -> template; got {type(overrides).__name__}. "
            "For a method's templates use peft_dor.method_spec(name).template_for(dataset)."
        )
    if dataset is None:
        return DEFAULT_TEMPLATE
    from .benchmarks import find_benchmark

    info = find_benchmark(dataset)
    key = info.dassl_name if info is not None else dataset
    if overrides is not None and key in overrides:
        return overrides[key]
    return CANONICAL_TEMPLATES.get(key, DEFAULT_TEMPLATE)
