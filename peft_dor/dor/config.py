"""DOR's configuration: every field checked when the config is made, so a wrong one fails before training."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..prompting import check_number, check_template
from .outliers import RESAMPLES, SAMPLINGS, SELECTIONS
from .vocabulary import clean_terms

SIDES = ("text", "image")
#: the pool size of the DOR paper, and the cap of an unset ``pool_size``
DEFAULT_POOL_SIZE = 5000


def check_outlier_images(images) -> None:
    if images is None:
        raise ValueError(
            "Image-side DOR (side='image', the default for vision-only methods such as VPT) needs `outlier_images`: "
            "a (N, 3, H, W) tensor of preprocessed images or a dataset of them (the paper uses ImageNet-1K images)."
        )
    if isinstance(images, torch.Tensor) and (images.dim() != 4 or images.shape[1] != 3):
        raise ValueError(
            f"`outlier_images` must be a (N, 3, H, W) tensor of images preprocessed with the CLIP image processor; "
            f"got shape {tuple(images.shape)}."
        )
    if hasattr(images, "__len__") and len(images) == 0:
        raise ValueError("`outlier_images` is empty; image-side DOR needs at least one outlier image.")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_vocabulary(vocabulary) -> None:
    """Cheap checks of a vocabulary specification, so a wrong one fails when the config is made, not at training."""
    if isinstance(vocabulary, (str, os.PathLike)):
        if str(vocabulary).lower() != "wordnet" and not os.path.isfile(vocabulary):
            raise ValueError(
                f"`vocabulary` must be 'wordnet', a list of terms or a text file with one term per line; "
                f"{str(vocabulary)!r} is not a file."
            )
        return
    if not isinstance(vocabulary, list):
        raise TypeError(f"`vocabulary` must be 'wordnet', a path or a list of terms; got {type(vocabulary).__name__}.")
    if not clean_terms(vocabulary):
        raise ValueError(
            "`vocabulary` is empty (no non-blank term); give at least a few terms that are not class names."
        )


@dataclass
class DORConfig:
    """Configuration of Dynamic Outlier Regularization (Wang et al., ICML 2025).

    Defaults follow the official code where it is known (per-step resampling, as many outliers as training classes,
    uniform without replacement, one generic template ``"a photo of a {}."``) and the paper's description otherwise
    (WordNet nouns, top-5000 "near" pool, λ = 8 for CoOp and 2 for the other methods).

    Example:
        ```python
        from peft_dor import DORConfig, DORTrainer

        trainer = DORTrainer(model=model, args=args, train_dataset=train, dor=DORConfig())  # λ from the method
        trainer = DORTrainer(model=model, args=args, train_dataset=train, dor=DORConfig(weight=4.0, resample="epoch"))
        ```
    """

    weight: float | None = field(
        default=None,
        metadata={"help": "λ, the weight of the DOR loss. None: the method's default (8 for CoOp, 2 otherwise)."},
    )
    pool_size: int | None = field(
        default=None,
        metadata={
            "help": "Number of vocabulary terms (or outlier images) in the outlier pool (K). None: all there are, up "
            f"to {DEFAULT_POOL_SIZE} (the paper's K); a number larger than the candidates is an error."
        },
    )
    num_outliers: int | None = field(
        default=None,
        metadata={"help": "Outliers drawn per forward (B). None: the number of training classes (official code)."},
    )
    selection: str = field(
        default="near",
        metadata={
            "help": "Which terms form the pool: 'near' (highest mean similarity to the classes), 'far' (lowest) or "
            "'random' (a seeded random subset)."
        },
    )
    resample: str = field(
        default="step",
        metadata={"help": "'step': new outliers for every forward (official code); 'epoch': one draw per epoch."},
    )
    sampling: str = field(
        default="uniform",
        metadata={
            "help": "'uniform' (without replacement), 'similarity' (weights softmax(score / temperature)) or 'cycle' "
            "(shuffle the pool and consume it in chunks of num_outliers)."
        },
    )
    temperature: float = field(default=0.1, metadata={"help": "Softmax temperature of sampling='similarity'."})
    template: str = field(
        default="a photo of a {}.",
        metadata={"help": "Template of the zero-shot outlier targets and of the pool scoring (one '{}')."},
    )
    class_template: str | None = field(
        default=None,
        metadata={"help": "Template of the class features used to score the vocabulary; None: `template`."},
    )
    vocabulary: str | list[str] = field(
        default="wordnet",
        metadata={
            "help": "'wordnet' (WordNet 3.0 noun lemma names), a list of terms, or a text file with one term per line."
        },
    )
    side: str | None = field(
        default=None,
        metadata={
            "help": "'text' (outlier words, for methods with text prompts) or 'image' (outlier images). None: the "
            "method's default ('image' for vision-only methods such as VPT, 'text' otherwise)."
        },
    )
    outlier_images: Any = field(
        default=None,
        repr=False,
        metadata={
            "help": "side='image': a (N, 3, H, W) tensor of preprocessed outlier images, or a dataset whose items "
            "are such tensors or dicts with 'pixel_values'."
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache root for WordNet and vocabulary features; None: $PEFT_DOR_CACHE or ~/.cache/peft_dor."
        },
    )
    cache_features: bool = field(
        default=True, metadata={"help": "Cache the vocabulary's zero-shot features on disk (reused by later runs)."}
    )
    seed: int | None = field(
        default=None, metadata={"help": "Seed of pool selection and sampling; None: the run's seed (args.seed)."}
    )
    eps: float = field(default=1e-7, metadata={"help": "eps of the cosine similarity (official code: 1e-7)."})
    batch_size: int = field(
        default=512, metadata={"help": "Prompts per text-tower call when encoding the vocabulary (no gradients)."}
    )

    def __post_init__(self) -> None:
        if self.weight is not None:
            check_number(self.weight, "weight", hint=", or None for the method's default")
        for name in ("pool_size", "batch_size"):
            value = getattr(self, name)
            if not (_is_count(value) or (name == "pool_size" and value is None)):
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        if self.num_outliers is not None and not _is_count(self.num_outliers):
            raise ValueError(
                f"`num_outliers` must be a positive integer, or None for the number of training classes; "
                f"got {self.num_outliers!r}."
            )
        if self.num_outliers is not None and self.num_outliers > (self.pool_size or DEFAULT_POOL_SIZE):
            raise ValueError(
                f"`num_outliers`={self.num_outliers} outliers per draw cannot come from a pool of `pool_size`="
                f"{self.pool_size or DEFAULT_POOL_SIZE}; lower num_outliers or raise pool_size."
            )
        for name, choices in (
            ("selection", SELECTIONS),
            ("resample", RESAMPLES),
            ("sampling", SAMPLINGS),
            ("side", (*SIDES, None)),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}; got {getattr(self, name)!r}.")
        check_number(self.temperature, "temperature", strict=True, hint=" (sampling='similarity': e.g. 0.1)")
        check_template(self.template, "template")
        if self.class_template is not None:
            check_template(self.class_template, "class_template")
        if self.side == "image":
            check_outlier_images(self.outlier_images)
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"`seed` must be a non-negative integer or None; got {self.seed!r}.")
        if not isinstance(self.vocabulary, (str, os.PathLike)) and isinstance(self.vocabulary, Iterable):
            self.vocabulary = list(self.vocabulary)
        _check_vocabulary(self.vocabulary)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (outlier images summarised), e.g. for logging a run's configuration."""
        values = dataclasses.asdict(dataclasses.replace(self, outlier_images=None))
        if self.outlier_images is not None:
            values["outlier_images"] = f"<{len(self.outlier_images)} images>"
        if isinstance(self.vocabulary, list):
            values["vocabulary"] = f"<{len(self.vocabulary)} terms>"
        return values
