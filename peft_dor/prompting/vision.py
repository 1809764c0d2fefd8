"""How a visual prompt reaches CLIP's vision tower, and how prompts of a given depth are placed in either tower.

Three facts about CLIP's vision tower (transformers 5.x) shape this module:

* ``vision_model.embeddings`` returns the patch tokens with CLS prepended and the position embeddings already
  added, and ``pre_layrnorm`` runs *after* it: tokens appended to the embeddings' output sit exactly "after the
  position embeddings, before the pre-LayerNorm", where VPT, IVLP and MaPLe put their layer-0 prompts;
* the tower pools the CLS token (index 0), so the sequence may grow: appending ``n_v`` tokens moves nothing;
* HF's vision model calls its embeddings and encoder layers itself, so the prompt layers that replace them keep
  the wrapped modules' call signatures and pass every other argument through unchanged.

Deep prompts at depth ``J`` overwrite the prompt tokens at the input of layers ``1..J-1`` with each layer's own
vectors (the last ``n_v`` tokens here; slots ``1..n`` on the text side, see :class:`DeepTextPromptLayer`); from
layer ``J`` on, the outputs at those positions propagate. :func:`prompt_targets` turns per-tower depths into the
module names a method wraps, and :class:`DeepPromptTuner` checks them against the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .config import ContextPromptConfig
from .layers import PromptLayer
from .tuner import PromptTuner

#: module-name patterns (regular expressions, matched at the end of a module name) of the places prompts enter
TEXT_EMBEDDINGS = r"text_model\.embeddings"
TEXT_LAYERS = r"text_model\.encoder\.layers\.\d+"
VISION_EMBEDDINGS = r"vision_model\.embeddings"
VISION_LAYERS = r"vision_model\.encoder\.layers\.\d+"


def prompt_targets(depths: Mapping[str, int]) -> list[str]:
    """The CLIP modules that prompts of depth ``J`` wrap in each tower: the embeddings and encoder layers 1..J-1.

    Args:
        depths: tower (``"text"`` or ``"vision"``) -> prompt depth ``J``; 0 leaves the tower untouched.

    Example:
        ```python
        prompt_targets({"vision": 3})
        # ['vision_model.embeddings', 'vision_model.encoder.layers.1', 'vision_model.encoder.layers.2']
        ```
    """
    targets: list[str] = []
    for tower, depth in depths.items():
        if depth >= 1:
            targets.append(f"{tower}_model.embeddings")
            targets.extend(f"{tower}_model.encoder.layers.{i}" for i in range(1, depth))
    return targets


def check_depth(value, argument: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is an integer of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}; got {value!r}.")


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

    default_dor_side: ClassVar[str] = "text"
    default_dor_weight: ClassVar[float] = 2.0

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


class DeepPromptTuner(PromptTuner):
    """A :class:`PromptTuner` whose config (a :class:`DeepPromptConfigMixin`) places prompts at a depth per tower."""

    def _prepare_adapter_config(self, peft_config, model_config):
        # Runs inside every injection (get_peft_model, add_adapter, load_adapter), before modules are matched.
        peft_config = super()._prepare_adapter_config(peft_config, model_config)
        peft_config.fit_to_model(self.model.clip.config)
        return peft_config


def append_prompts(hidden_states: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``[hidden_states, prompts]`` along the sequence: ``(B, L, D)`` and ``(n, D)`` give ``(B, L + n, D)``."""
    prompts = prompts.to(hidden_states.dtype).expand(hidden_states.shape[0], -1, -1)
    return torch.cat([hidden_states, prompts], dim=1)


def replace_last_tokens(hidden_states: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``hidden_states`` with its last ``n`` tokens replaced by ``prompts`` ``(n, D)``, out of place."""
    return append_prompts(hidden_states[:, : -prompts.shape[-2]], prompts)


class VisionPromptLayer(PromptLayer):
    """Learned visual prompt tokens appended after the patch tokens: wraps ``vision_model.embeddings``.

    The output is ``[CLS, patches + position embeddings, prompts]``; CLIP's pre-LayerNorm and encoder then run on
    the longer sequence and pool CLS as before. The prompts get no position embedding. Called with prompts off
    (adapter disabled, suspended for zero-shot features, another adapter active) it is CLIP's embeddings module.

    Subclasses name the parameter dict after their method (``adapter_layer_names = ("vpt_prompts",)``); the config
    gives the number of tokens (``vision_tokens``) and the std of their normal init (``ctx_std``). Override
    :meth:`prompt_vectors` to compute the prompts instead of learning them directly (MaPLe).

    Example:
        ```python
        class VPTVisionLayer(VisionPromptLayer):
            adapter_layer_names = ("vpt_prompts",)
        ```
    """

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        shape = (config.vision_tokens, wrapper.clip.config.vision_config.hidden_size)
        getattr(self, self.adapter_layer_names[0])[adapter_name] = nn.Parameter(torch.randn(shape) * config.ctx_std)
        self._finish_update(adapter_name)

    def prompt_vectors(self, adapter_name: str) -> torch.Tensor:
        """The ``(n_v, D)`` prompt tokens of ``adapter_name`` for this layer."""
        return getattr(self, self.adapter_layer_names[0])[adapter_name]

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        embeddings = self.base_layer(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return embeddings
        return append_prompts(embeddings, self.prompt_vectors(adapter))


class DeepVisionPromptLayer(VisionPromptLayer):
    """Deep visual prompts: wraps ``vision_model.encoder.layers[i]`` (i >= 1) and overwrites the last ``n_v`` tokens
    of its input with the layer's own vectors before running the layer.

    The layer relies on the embeddings' :class:`VisionPromptLayer` of the same adapter having appended ``n_v``
    tokens; both switch on and off together because PEFT enables, disables and selects adapters model-wide.
    """

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        adapter = self.active_prompt_adapter()
        if adapter is not None:
            hidden_states = replace_last_tokens(hidden_states, self.prompt_vectors(adapter))
        return self.base_layer(hidden_states, attention_mask, **kwargs)
