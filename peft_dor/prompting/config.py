"""Configuration fields shared by every prompt method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from peft import PeftConfig

from .text import CLASS_TOKEN_POSITIONS, PromptLayout


def _check_class_names(class_names) -> list[str]:
    if class_names is None or isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(
            "`class_names` must be a non-empty list of strings, e.g. class_names=['cat', 'dog']; "
            f"got {class_names!r}."
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
    """Validate a hand-crafted template such as ``"a photo of a {}."``."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(
            f"`{argument}` must contain exactly one '{{}}' placeholder for the class name, e.g. 'a photo of a {{}}.'; "
            f"got {template!r}."
        )
    return template


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

    #: modules a method wraps when ``target_modules`` is not given
    default_target_modules: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_names = _check_class_names(self.class_names)
        check_template(self.template)
        if self.target_modules is None:
            self.target_modules = list(self.default_target_modules)
        elif not isinstance(self.target_modules, str):
            self.target_modules = sorted(set(self.target_modules))


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
        if self.ctx_init is not None and not self.ctx_init.strip():
            self.ctx_init = None
        if self.n_ctx is None and not self.ctx_init:
            self.n_ctx = self.default_n_ctx
        if self.n_ctx is not None and (not isinstance(self.n_ctx, int) or self.n_ctx < 1):
            raise ValueError(f"`n_ctx` must be a positive integer, e.g. 4 or 16; got {self.n_ctx!r}.")
        if self.class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"`class_token_position` must be one of {CLASS_TOKEN_POSITIONS}; got {self.class_token_position!r}."
            )
        if not self.ctx_std > 0:
            raise ValueError(f"`ctx_std` must be positive; got {self.ctx_std!r}.")

    def initialises_from_phrase(self) -> bool:
        return bool(self.ctx_init)

    def prompt_layout(self) -> PromptLayout:
        """The layout of the learned prompt; ``n_ctx`` may be None (one slot per phrase token)."""
        prefix = self.ctx_init.replace("_", " ") if self.ctx_init else " ".join(["X"] * self.n_ctx)
        return PromptLayout(prefix=prefix, n_ctx=self.n_ctx, class_token_position=self.class_token_position)
