"""Configuration fields shared by every prompt method."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from string import Formatter
from typing import ClassVar

from peft import PeftConfig

from .text import CLASS_TOKEN_POSITIONS, PromptLayout


def _check_class_names(class_names) -> list[str]:
    if class_names is None or isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(
            f"`class_names` must be a non-empty list of strings, e.g. class_names=['cat', 'dog']; got {class_names!r}."
        )
    names = list(class_names)
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"`class_names` must hold non-empty strings; got {name!r}. Remove or rename it.")
        # CLIP's tokenizer lower-cases and normalises whitespace, so these would give identical prompts.
        key = " ".join(name.casefold().split())
        if key in seen:
            raise ValueError(
                f"`class_names` holds duplicates: {seen[key]!r} and {name!r} give the same prompt. "
                "Give every class a distinct name."
            )
        seen[key] = name
    return names


def check_template(template: str, argument: str = "template") -> str:
    """Validate a hand-crafted template such as ``"a photo of a {}."``.

    The template must format with one name and nothing else: exactly one ``{}`` placeholder, no named or numbered
    fields (``{x}``, ``{0}``) and balanced braces (write a literal brace as ``{{`` or ``}}``).
    """
    fields = None
    if isinstance(template, str):
        try:
            fields = [
                (name, spec, conversion)
                for _, name, spec, conversion in Formatter().parse(template)
                if name is not None
            ]
        except ValueError:  # unbalanced braces, e.g. "a photo of a {}. }"
            fields = None
    if fields != [("", "", None)]:
        raise ValueError(
            f"`{argument}` must contain exactly one '{{}}' placeholder for the class name, e.g. 'a photo of a {{}}.'; "
            f"got {template!r}. Other braces must be doubled ('{{{{', '}}}}')."
        )
    return template


def check_number(value, argument: str, *, minimum: float = 0.0, strict: bool = False, hint: str = "") -> float:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is a finite real number ``>= minimum`` (``>`` when
    ``strict``); booleans are rejected. Returns the value.

    Example:
        ```python
        check_number(8.0, "kg_weight")                  # 8.0
        check_number(0.0, "ctx_std", strict=True)       # ValueError: `ctx_std` must be a finite number > 0; got 0.0.
        ```
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"`{argument}` must be a finite number {relation} {minimum:g}{hint}; got {value!r}.")
    return value


@dataclass
class PromptConfig(PeftConfig):
    """Fields every prompt method shares: the classes, the hand-crafted template and the tokenizer.

    The class names stored here are the ones the adapter was trained on; they are a convenience for loading a
    ready classifier. ``model.set_class_names(names)`` classifies among any other names with the same prompts.
    """

    class_names: list[str] | None = field(
        default=None, metadata={"help": "Names of the classes to classify among, e.g. ['cat', 'dog']. Required."}
    )
    template: str = field(
        default="a photo of a {}.",
        metadata={"help": "Hand-crafted template with one '{}' for the class name; used for zero-shot features."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "CLIP tokenizer to load; defaults to the base model's `name_or_path`."},
    )
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "CLIP modules the method wraps; each method fills in its own default."},
    )
    base_model_dims: dict[str, int] | None = field(
        default=None,
        metadata={
            "help": "Sizes of the CLIP the adapter was made for (width and layer count of each tower, projection_dim). "
            "Filled in when the adapter is injected and checked whenever it is injected again (e.g. loaded), so "
            "prompts never land on a CLIP of another size. Leave it None."
        },
    )

    #: modules a method wraps when ``target_modules`` is not given
    default_target_modules: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_names = _check_class_names(self.class_names)
        check_template(self.template)
        if self.tokenizer_name_or_path is not None and not isinstance(self.tokenizer_name_or_path, str):
            raise TypeError(
                "`tokenizer_name_or_path` must be a string (a Hub id or a local folder) or None; got "
                f"{type(self.tokenizer_name_or_path).__name__}."
            )
        if self.target_modules is None:
            self.target_modules = list(self.default_target_modules)
        elif not isinstance(self.target_modules, str):
            self.target_modules = sorted(set(self.target_modules))
        if self.base_model_dims is not None and not isinstance(self.base_model_dims, dict):
            raise TypeError(f"`base_model_dims` must be a dict or None; got {type(self.base_model_dims).__name__}.")

    def check_base_model(self, clip_config) -> None:
        """Record the sizes of ``clip_config`` (a ``CLIPConfig``) on first use; afterwards raise ``ValueError`` if
        they differ, i.e. if the adapter meets a CLIP of another width or depth than the one it was made for."""
        dims = base_model_dims(clip_config)
        if self.base_model_dims is None:
            self.base_model_dims = dims
            return
        differences = [
            f"{key} {self.base_model_dims[key]} vs {dims.get(key)}"
            for key in sorted(self.base_model_dims)
            if self.base_model_dims[key] != dims.get(key)
        ]
        if differences:
            raise ValueError(
                f"This adapter was made for a CLIP of another size than the base model it is put on "
                f"(adapter vs base model: {', '.join(differences)}); its prompts would not fit. Load it onto the "
                f"base model it was trained with (base_model_name_or_path={self.base_model_name_or_path!r})."
            )


def base_model_dims(clip_config) -> dict[str, int]:
    """The sizes of a ``CLIPConfig`` that prompt tensors depend on: each tower's width and layer count and
    ``projection_dim``."""
    text, vision = clip_config.text_config, clip_config.vision_config
    return {
        "text_hidden_size": int(text.hidden_size),
        "text_num_hidden_layers": int(text.num_hidden_layers),
        "vision_hidden_size": int(vision.hidden_size),
        "vision_num_hidden_layers": int(vision.num_hidden_layers),
        "projection_dim": int(clip_config.projection_dim),
    }


@dataclass
class ContextPromptConfig(PromptConfig):
    """A :class:`PromptConfig` with CoOp-style learned context in the text prompt."""

    #: context length used with random init when ``n_ctx`` is not given
    default_n_ctx: ClassVar[int] = 16

    n_ctx: int | None = field(
        default=None,
        metadata={
            "help": "Number of learned context tokens. None: one per token of `ctx_init`, or the method's default "
            "(16 for CoOp) with random init. A number smaller than the phrase learns only its first n tokens and "
            "keeps the rest of the phrase as fixed words (MaPLe's and IVLP's layout)."
        },
    )
    ctx_init: str | None = field(
        default=None,
        metadata={"help": "Phrase whose word embeddings initialise the context, e.g. 'a photo of a'; random if None."},
    )
    ctx_std: float = field(default=0.02, metadata={"help": "Std of the normal random init of the context."})
    class_token_position: str = field(
        default="end", metadata={"help": "Where the class name goes: 'end', 'middle' or 'front'."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ctx_init is not None and not isinstance(self.ctx_init, str):
            raise TypeError(
                f"`ctx_init` must be a phrase such as 'a photo of a', or None; got {type(self.ctx_init).__name__}."
            )
        if self.ctx_init is not None and "{" in self.ctx_init:
            raise ValueError(
                f"`ctx_init` is the phrase whose words initialise the context, not a template; got {self.ctx_init!r}. "
                "Drop the '{}' (e.g. ctx_init='a photo of a')."
            )
        if self.ctx_init is not None and not self.ctx_init.strip():
            self.ctx_init = None
        if self.n_ctx is None and not self.ctx_init:
            self.n_ctx = self.default_n_ctx
        if self.n_ctx is not None and (
            not isinstance(self.n_ctx, int) or isinstance(self.n_ctx, bool) or self.n_ctx < 1
        ):
            raise ValueError(f"`n_ctx` must be a positive integer, e.g. 4 or 16; got {self.n_ctx!r}.")
        if self.class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"`class_token_position` must be one of {CLASS_TOKEN_POSITIONS}; got {self.class_token_position!r}."
            )
        check_number(self.ctx_std, "ctx_std", strict=True, hint=" (the std of the random init, e.g. 0.02)")

    def initialises_from_phrase(self) -> bool:
        return bool(self.ctx_init)

    def prompt_layout(self) -> PromptLayout:
        """The layout of the learned prompt; ``n_ctx`` may be None (one slot per phrase token)."""
        prefix = self.ctx_init.replace("_", " ") if self.ctx_init else " ".join(["X"] * self.n_ctx)
        return PromptLayout(prefix=prefix, n_ctx=self.n_ctx, class_token_position=self.class_token_position)
