"""Config bases: the fields every prompt method shares, CoOp-style context, and prompts that go deep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from peft import PeftConfig

from .backbone import embed_dim
from .checks import check_class_names, check_number, check_template
from .tokenizer import CLASS_TOKEN_POSITIONS, PromptLayout, phrase_words
from .vision import prompt_targets


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
        self.class_names = check_class_names(self.class_names)
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
    """The sizes of a ``CLIPConfig`` (or ``SiglipConfig``) that prompt tensors depend on: each tower's width and layer
    count and the joint width (``projection_dim``; SigLIP's ``text_config.projection_size``)."""
    text, vision = clip_config.text_config, clip_config.vision_config
    return {
        "text_hidden_size": int(text.hidden_size),
        "text_num_hidden_layers": int(text.num_hidden_layers),
        "vision_hidden_size": int(vision.hidden_size),
        "vision_num_hidden_layers": int(vision.num_hidden_layers),
        "projection_dim": embed_dim(clip_config),
    }


@dataclass
class ContextPromptConfig(PromptConfig):
    """A :class:`PromptConfig` with CoOp-style learned context in the text prompt."""

    #: context length used with random init when ``n_ctx`` is not given
    default_n_ctx: ClassVar[int] = 16

    n_ctx: int | None = field(
        default=None,
        metadata={
            "help": "Number of learned context tokens. None: one per word of `ctx_init` (the official rule; the phrase's "
            "tokens beyond them stay fixed words), or the method's default (16 for CoOp) with random init. A number "
            "smaller than the phrase learns only its first n tokens and keeps the rest of the phrase as fixed words "
            "(MaPLe's and IVLP's layout)."
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
        if self.n_ctx is None:
            # the official rule (CoOp, CoCoOp, ProGrad, MaPLe): one learned slot per *word* of the phrase; a word of
            # several tokens leaves its last tokens as fixed words after the context
            self.n_ctx = phrase_words(self.ctx_init) if self.ctx_init else self.default_n_ctx
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
        """The layout of the learned prompt: the phrase (or ``n_ctx`` placeholders), its first ``n_ctx`` tokens learned."""
        prefix = self.ctx_init.replace("_", " ") if self.ctx_init else " ".join(["X"] * self.n_ctx)
        return PromptLayout(prefix=prefix, n_ctx=self.n_ctx, class_token_position=self.class_token_position)


class DeepPromptConfigMixin:
    """For configs whose prompts go ``J`` layers deep in one or both towers.

    A config lists its towers in :meth:`prompt_depths`; the default ``target_modules`` follow from them, and
    :meth:`fit_to_model` checks them against the CLIP model the adapter is injected into.
    """

    def prompt_depths(self) -> dict[str, tuple[str, int | None]]:  # pragma: no cover - abstract
        """Tower -> (name of the config field holding its depth, the depth; 0: tower untouched, None: all layers)."""
        raise NotImplementedError

    def default_targets(self) -> list[str]:
        """The modules the prompts wrap, or ``[]`` while a depth still waits for the model (``None``)."""
        depths = {tower: depth for tower, (_, depth) in self.prompt_depths().items()}
        return [] if None in depths.values() else prompt_targets(depths)

    def resolve_depth(self, field_name: str, n_layers: int) -> None:
        """Fill in a depth left as ``None`` ("every layer") once the model is known (VPT's ``deep=True``)."""
        raise ValueError(f"`{field_name}` must be set.")

    def fit_to_model(self, clip_config) -> None:
        """Check the depths against ``clip_config`` and fill in ``target_modules`` if the user gave none."""
        for tower, (field_name, depth) in self.prompt_depths().items():
            n_layers = getattr(clip_config, f"{tower}_config").num_hidden_layers
            if depth is None:
                self.resolve_depth(field_name, n_layers)
            elif depth > n_layers:
                raise ValueError(
                    f"`{field_name}`={depth} but the {tower} tower has only {n_layers} layers; "
                    f"use a depth between 1 and {n_layers}."
                )
        if not self.target_modules:
            self.target_modules = self.default_targets()


@dataclass
class DeepContextPromptConfig(DeepPromptConfigMixin, ContextPromptConfig):
    """A :class:`ContextPromptConfig` whose text context also has deep prompts (IVLP, MaPLe, PromptSRC).

    Every prompted text layer overwrites the same ``n_ctx`` slots, so ``n_ctx`` is a fixed number (the method's
    ``default_n_ctx`` when not given). With ``ctx_init`` the context starts as the phrase's first ``n_ctx`` word
    embeddings and the rest of the phrase stays a fixed part of the prompt; ``ctx_init=None`` (or ``""``) gives a
    random context in ``X`` placeholder slots. Subclasses add their depth fields and :meth:`prompt_depths`.
    """

    n_ctx: int | None = field(
        default=None,
        metadata={
            "help": "Learned text tokens per layer; None: the method's default (4 for IVLP and PromptSRC, 2 for "
            "MaPLe). With `ctx_init`, the first n_ctx words of the phrase are learned and the rest stays fixed."
        },
    )
    ctx_init: str | None = field(
        default="a photo of a",
        metadata={"help": "Phrase whose first n_ctx word embeddings initialise the text context; None for random."},
    )

    def __post_init__(self) -> None:
        if self.n_ctx is None:  # before the parent, for which None with a phrase means "one token per word"
            self.n_ctx = self.default_n_ctx
        super().__post_init__()
        if not self.target_modules:
            self.target_modules = self.default_targets()

    @property
    def deep_text_tokens(self) -> int:
        """Slots each deep text layer overwrites (1..n_ctx): the same as the input context."""
        return self.n_ctx
