"""How a text prompt runs through CLIP's text tower.

``CLIPTextModel.forward`` accepts no ``inputs_embeds``, so the tower is driven layer by layer here, and an explicit
causal mask must then be passed (SDPA only applies causality when transformers builds the mask itself). Methods plug
in through prompt layers (``peft_dor.prompting.layers``) that PEFT injects in place of CLIP modules; the loop below
hands each of them a :class:`TextPromptContext` telling it which slots to overwrite. The prompts themselves come from
``peft_dor.prompting.tokenizer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbone import text_projection, text_rules
from .prefix import run_with_shared_prefix, shared_prefix_length
from .tokenizer import TokenizedPrompts


@dataclass
class TextPromptContext:
    """What prompt layers may read during one pass of the text tower.

    Attributes:
        prompts: the tokenised prompts of this pass.
        class_index: ``(P,)`` index of each prompt's class in the model's class list, ``-1`` for names outside it
            (DOR outliers, zero-shot scoring); class-specific methods need it.
        image_features: ``(B, D)`` L2-normalised image features for image-conditioned methods (CoCoOp).
        names: the names behind the prompts, for methods that derive per-name inputs.
        extras: free-form per-pass inputs a method's tuner prepares (e.g. TCP's class knowledge features).
    """

    prompts: TokenizedPrompts
    class_index: torch.LongTensor | None = None
    image_features: torch.Tensor | None = None
    names: Sequence[str] = ()
    extras: dict = field(default_factory=dict)

    def select(self, rows: slice) -> TextPromptContext:
        """The same pass restricted to prompts ``rows`` (for chunked encoding); per-prompt extras are sliced too."""
        n_prompts = len(self.prompts)
        extras = {
            key: value[rows] if isinstance(value, torch.Tensor) and value.shape[:1] == (n_prompts,) else value
            for key, value in self.extras.items()
        }
        return TextPromptContext(
            prompts=self.prompts.select(rows),
            class_index=None if self.class_index is None else self.class_index[rows],
            image_features=self.image_features,
            names=list(self.names)[rows],
            extras=extras,
        )


def causal_mask(length: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Additive ``(1, 1, L, L)`` causal mask: 0 on and below the diagonal, the dtype's minimum above.

    Needed whenever CLIP's text layers are called by hand: without it SDPA attends bidirectionally.
    """
    mask = torch.full((length, length), torch.finfo(dtype).min, dtype=dtype, device=device)
    return torch.triu(mask, diagonal=1)[None, None]


def replace_slots(embeds: torch.Tensor, slot_index: torch.LongTensor, values: torch.Tensor) -> torch.Tensor:
    """Overwrite ``embeds[p, slot_index[p, j]]`` with ``values[p, j]``, out of place so gradients reach ``values``.

    Args:
        embeds: ``(P, L, D)`` hidden states or token embeddings.
        slot_index: ``(P, n)`` positions to overwrite.
        values: ``(P, n, D)`` (or broadcastable ``(n, D)``) replacement vectors.
    """
    values = values.to(embeds.dtype).expand(embeds.shape[0], -1, -1)
    index = slot_index[..., None].expand(-1, -1, embeds.shape[-1])
    return embeds.scatter(1, index, values)


def pool_eos(hidden: torch.Tensor, eos_index: torch.LongTensor) -> torch.Tensor:
    """The row at each prompt's EOS token (CLIP's text pooling)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_index.to(hidden.device)]


def pool_text(hidden: torch.Tensor, eos_index: torch.LongTensor, pooling: str) -> torch.Tensor:
    """The pooled row of each sequence as the backbone's ``pooling`` rule says: ``"eos"`` (the row at ``eos_index``,
    CLIP) or ``"last"`` (the last position of the fixed-length sequence, SigLIP)."""
    if pooling == "last":
        return hidden[:, -1]
    return pool_eos(hidden, eos_index)


class TextTower:
    """Runs CLIP's text tower by hand so prompt layers receive their :class:`TextPromptContext`.

    Only orchestration lives here: the token embedding, encoder layers, final LayerNorm and projection are CLIP's
    own modules (or the prompt layers PEFT put in their place). With causal attention (the backbone's
    :class:`~peft_dor.prompting.backbone.TextRules`) and ``share_prefix``, the positions every prompt of the pass
    shares run once per pass (``peft_dor.prompting.prefix``); the result is the same.

    Args:
        clip: the ``CLIPModel``.
        share_prefix: encode the shared prompt prefix once where that is exact (``PromptCLIP.share_text_prefix``).
    """

    def __init__(self, clip: nn.Module, share_prefix: bool = True):
        self.clip = clip
        self.rules = text_rules(clip)
        self.projection = text_projection(clip)
        self.share_prefix = share_prefix

    def __call__(self, context: TextPromptContext, checkpointing: bool = False) -> torch.Tensor:
        """Projected, un-normalised features ``(R * P, D)``; ``R > 1`` when a layer conditions prompts on images."""
        text = self.clip.text_model
        prompts = context.prompts
        input_ids = prompts.input_ids
        embeddings = text.embeddings
        if getattr(embeddings, "is_prompt_layer", False):
            hidden = embeddings(input_ids=input_ids, prompt_context=context)
        else:
            hidden = embeddings(input_ids=input_ids)
        repeats = hidden.shape[0] // len(prompts)
        eos_index = prompts.eos_index.repeat(repeats)
        mask = causal_mask(hidden.shape[1], hidden.dtype, hidden.device) if self.rules.causal else None
        layers = list(text.encoder.layers)
        shared = shared_prefix_length(prompts, embeddings) if self.share_prefix and self.rules.causal else 0
        if shared:
            hidden, done = run_with_shared_prefix(layers, hidden, shared, context, mask, checkpointing)
            if done == len(layers):  # only the suffix rows are left: the EOS rows sit `shared` positions earlier
                return self._pool_and_project(hidden, eos_index - shared)
            layers = layers[done:]
        for layer in layers:
            kwargs = {"prompt_context": context} if getattr(layer, "is_prompt_layer", False) else {}
            if checkpointing and torch.is_grad_enabled():
                hidden = checkpoint(_call_layer, layer, hidden, mask, kwargs, use_reentrant=False)
            else:
                hidden = layer(hidden, mask, **kwargs)
        return self._pool_and_project(hidden, eos_index)

    def _pool_and_project(self, hidden: torch.Tensor, eos_index: torch.LongTensor) -> torch.Tensor:
        """The text features from the last layer's hidden states: final LayerNorm, pooled row, projection.

        Both paths end here (the full rows, or the suffix rows of a shared-prefix pass with ``eos_index`` shifted)."""
        hidden = self.clip.text_model.final_layer_norm(hidden)
        pooled = pool_text(hidden, eos_index, self.rules.pooling)
        return self.projection(pooled)


def _call_layer(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, kwargs: dict) -> torch.Tensor:
    return layer(hidden, mask, **kwargs)
