"""Exact prefix sharing in a causal text tower: the positions every prompt of a pass shares are encoded once.

With causal attention the hidden state at position ``j`` depends on positions ``0..j`` only. When every prompt of a
pass holds the same vectors at positions ``0..s-1`` (the same token ids there, and the same learned vectors written
there by the context layer at the input and by deep prompt layers deeper in), their hidden states at those positions
are the same at every layer. So the shared prefix runs through each layer once per pass (once per image when the
context depends on the image, as CoCoOp's does), and only the suffixes (class name, suffix words, EOS) run per
prompt, attending to the prefix's keys and values plus their own causal past. This is exact, not an approximation;
the prefix's gradient is the sum over the prompts that read it, which autograd gives.

How far prompts share is decided per pass from the prompt layout and from what the layers declare:

* the token ids and the positions of the learned slots (a "front" or "middle" layout, or names sharing first tokens,
  move where prompts first differ);
* the context layer's :meth:`~peft_dor.prompting.layers.TextContextLayer.context_shared_across_prompts`
  (class-specific context shares nothing beyond ``[SOS]``, which is not worth a split);
* each deep layer's :meth:`~peft_dor.prompting.layers.DeepTextPromptLayer.slot_vectors`: ``(n, D)`` vectors are shared
  and written into the prefix; per-prompt vectors at prefix positions (TCP's class tokens) end the sharing at that
  layer, from where the full rows run as usual.

A layer with forward hooks (on it or on a module inside it) sees full rows, from that layer on: hooks observe what
they always did. Only :class:`~peft_dor.prompting.text.TextTower` calls this module, and only for a backbone whose text rules say
attention is causal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .tokenizer import TokenizedPrompts

#: share only when more than ``[SOS]`` is shared: one position does not pay for the split attention
MIN_SHARED_POSITIONS = 2
_ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj")
_LAYER_PARTS = ("layer_norm1", "self_attn", "layer_norm2", "mlp")


def shared_prefix_length(prompts: TokenizedPrompts, embeddings: nn.Module) -> int:
    """How many leading positions every prompt of the pass shares, or 0 when sharing gives nothing.

    Args:
        prompts: the tokenised prompts of the pass.
        embeddings: the text tower's embeddings module (CLIP's, or the context prompt layer PEFT put there).
    """
    ids = prompts.input_ids
    if ids.shape[0] < 2:
        return 0
    differs = (ids != ids[:1]).any(dim=0)
    limit = int(prompts.eos_index.min())  # every prompt keeps at least its EOS in the suffix
    slots = prompts.slot_index
    if slots is not None:
        writes_shared = _context_shared(embeddings)
        if writes_shared is None:
            return 0
        if not writes_shared:
            limit = min(limit, int(slots.min()))
        # prompts agree at a position only if the same slot (or no slot) sits there in each of them
        order = torch.arange(1, slots.shape[1] + 1, device=slots.device).expand_as(slots)
        slot_map = torch.zeros_like(ids).scatter(1, slots.to(ids.device), order.to(ids.device))
        differs |= (slot_map != slot_map[:1]).any(dim=0)
    first = int(differs.int().argmax()) if bool(differs.any()) else ids.shape[1]
    length = min(first, limit)
    return length if length >= MIN_SHARED_POSITIONS else 0


def _context_shared(embeddings: nn.Module) -> bool | None:
    """Whether the embeddings module writes the same vectors into every prompt; None when it cannot say."""
    if not getattr(embeddings, "is_prompt_layer", False) or embeddings.active_prompt_adapter() is None:
        return True
    declared = getattr(embeddings, "context_shared_across_prompts", None)
    return None if declared is None else bool(declared())


def run_with_shared_prefix(
    layers: list[nn.Module],
    hidden: torch.Tensor,
    length: int,
    context,
    mask: torch.Tensor,
    checkpointing: bool = False,
) -> tuple[torch.Tensor, int]:
    """Run ``layers`` over ``hidden`` with the first ``length`` positions shared, for as many layers as sharing lasts.

    Args:
        layers: the text encoder layers (CLIP's, or prompt layers around them).
        hidden: ``(R * P, L, D)`` token embeddings of ``P`` prompts, each run once per image (``R``, 1 without images).
        length: the shared prefix length from :func:`shared_prefix_length`.
        context: the pass's :class:`~peft_dor.prompting.text.TextPromptContext`, handed to deep prompt layers.
        mask: the ``(1, 1, L, L)`` additive causal mask of the full rows.
        checkpointing: recompute each layer's activations in backward.

    Returns:
        ``(hidden, done)``: after all layers (``done == len(layers)``), the ``(R * P, L - length, D)`` suffix rows
        (row ``i`` is position ``length + i``); when sharing ended before layer ``done``, the full ``(R * P, L, D)``
        rows at that layer's input, for the caller to run the remaining layers on.
    """
    n_prompts = len(context.prompts)
    repeats = hidden.shape[0] // n_prompts
    # copies (never views, even where the slice happens to be contiguous), so the full embeddings are not kept
    # alive for backward
    prefix = hidden.unflatten(0, (repeats, n_prompts))[:, 0, :length].clone(memory_format=torch.contiguous_format)
    suffix = hidden[:, length:].clone(memory_format=torch.contiguous_format)
    masks = mask[..., :length, :length], mask[..., length:, :]
    for done, layer in enumerate(layers):
        base = _splittable_layer(layer)
        written = None if base is None else _write_deep_slots(layer, base, prefix, suffix, length, context)
        if written is None:
            return (hidden if done == 0 else merge_prefix(prefix, suffix)), done
        prefix, suffix = written
        if checkpointing and torch.is_grad_enabled():
            prefix, suffix = checkpoint(split_layer, base, prefix, suffix, *masks, use_reentrant=False)
        else:
            prefix, suffix = split_layer(base, prefix, suffix, *masks)
    return suffix, len(layers)


def merge_prefix(prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
    """The full ``(R * P, L, D)`` rows: each image's ``(s, D)`` prefix in front of each of its prompts' suffixes."""
    repeats, length, width = prefix.shape
    n_prompts = suffix.shape[0] // repeats
    expanded = prefix[:, None].expand(repeats, n_prompts, length, width).reshape(-1, length, width)
    return torch.cat([expanded, suffix], dim=1)


def _splittable_layer(layer: nn.Module) -> nn.Module | None:
    """The CLIP encoder layer whose modules the split runs, or None when this layer must see full rows."""
    base = layer
    if getattr(layer, "is_prompt_layer", False):
        if not hasattr(layer, "slot_vectors"):
            return None  # a prompt layer whose writes this module cannot place
        base = layer.base_layer
    if not all(hasattr(base, part) for part in _LAYER_PARTS):
        return None
    if not all(hasattr(base.self_attn, part) for part in _ATTENTION_PARTS):
        return None
    # a hook someone put on the layer (or inside it) expects the full rows through the module's forward
    return None if any(_has_hooks(module) for module in (layer, *base.modules())) else base


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _write_deep_slots(layer, base, prefix, suffix, length, context):
    """``(prefix, suffix)`` with a deep prompt layer's vectors written where they fall, or None when the layer
    writes per-prompt vectors into the shared prefix (which ends the sharing)."""
    if layer is base:
        return prefix, suffix
    written = layer.slot_vectors(context, suffix.shape[0])
    if written is None:
        return prefix, suffix
    slot_index, vectors = written
    per_prompt = vectors.dim() == 3
    # the slot map agrees across prompts before `length`, so a slot lies in the prefix for all prompts or for none
    in_prefix = slot_index[0] < length
    if per_prompt and bool(in_prefix.any()):
        return None
    shared_slots = in_prefix.nonzero().flatten()
    own_slots = (~in_prefix).nonzero().flatten()
    if len(shared_slots):
        prefix = layer.overwrite_slots(prefix, slot_index[:1, shared_slots], vectors[shared_slots])
    if len(own_slots):
        own_vectors = vectors[:, own_slots] if per_prompt else vectors[own_slots]
        suffix = layer.overwrite_slots(suffix, slot_index[:, own_slots] - length, own_vectors)
    return prefix, suffix


def split_layer(
    layer: nn.Module, prefix: torch.Tensor, suffix: torch.Tensor, prefix_mask: torch.Tensor, suffix_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-LayerNorm CLIP encoder layer over a shared prefix and the suffixes that continue it.

    Uses the layer's own modules (``layer_norm1``, ``self_attn``'s projections, ``layer_norm2``, ``mlp``), so it
    computes what ``layer(full_rows, causal_mask)`` computes at these positions.

    Args:
        layer: a ``CLIPEncoderLayer``.
        prefix: ``(R, s, D)`` hidden states of the shared positions, one row per image (``R = 1`` without images).
        suffix: ``(R * P, t, D)`` hidden states of the remaining positions of each prompt.
        prefix_mask: ``(1, 1, s, s)`` additive causal mask.
        suffix_mask: ``(1, 1, t, s + t)`` additive mask: every prefix position, then the suffix's causal past.
    """
    attn_prefix, attn_suffix = split_attention(
        layer.self_attn, layer.layer_norm1(prefix), layer.layer_norm1(suffix), prefix_mask, suffix_mask
    )
    prefix, suffix = prefix + attn_prefix, suffix + attn_suffix
    prefix = prefix + layer.mlp(layer.layer_norm2(prefix))
    suffix = suffix + layer.mlp(layer.layer_norm2(suffix))
    return prefix, suffix


def split_attention(
    attn: nn.Module, prefix: torch.Tensor, suffix: torch.Tensor, prefix_mask: torch.Tensor, suffix_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP self-attention (``CLIPAttention``'s projections, heads and scale) split into prefix and suffixes.

    The suffix queries of all ``P`` prompts of an image are laid out as one ``(P * t)``-row block per head, so their
    scores against the prefix are one matmul with the prefix's keys: the prefix's keys and values are never expanded
    per prompt. The scores against the prefix and against the suffix's own past share one softmax.
    """
    repeats, n_prefix, width = prefix.shape
    n_rows, n_suffix, _ = suffix.shape
    n_prompts = n_rows // repeats
    heads = attn.num_heads
    q_pre, k_pre, v_pre = (_heads(proj(prefix), repeats, heads)[:, :, 0] for proj in _projections(attn))
    q_suf, k_suf, v_suf = (_heads(proj(suffix), repeats, heads) for proj in _projections(attn))
    dim = q_pre.shape[-1]

    # the prefix: ordinary causal attention, once per image
    probs = _probs(q_pre @ k_pre.transpose(-1, -2) * attn.scale + prefix_mask, attn)
    out_prefix = (probs @ v_pre).transpose(1, 2).reshape(repeats, n_prefix, width)

    # the suffixes: (R, h, P, t, d); against the prefix as (R, h, P * t, d) @ (R, h, d, s)
    to_prefix = (q_suf.reshape(repeats, heads, n_prompts * n_suffix, dim) @ k_pre.transpose(-1, -2)).view(
        repeats, heads, n_prompts, n_suffix, n_prefix
    )
    to_self = q_suf @ k_suf.transpose(-1, -2)
    scores = torch.cat([to_prefix, to_self], dim=-1) * attn.scale + suffix_mask[:, :, None]
    probs = _probs(scores, attn)
    from_prefix = probs[..., :n_prefix].reshape(repeats, heads, n_prompts * n_suffix, n_prefix) @ v_pre
    out = from_prefix.view_as(q_suf) + probs[..., n_prefix:] @ v_suf
    out_suffix = out.permute(0, 2, 3, 1, 4).reshape(n_rows, n_suffix, width)
    return attn.out_proj(out_prefix), attn.out_proj(out_suffix)


def _projections(attn: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    return attn.q_proj, attn.k_proj, attn.v_proj


def _heads(x: torch.Tensor, repeats: int, heads: int) -> torch.Tensor:
    """``(R * P, T, D)`` -> contiguous ``(R, h, P, T, d)``."""
    rows, length, width = x.shape
    return x.view(repeats, rows // repeats, length, heads, width // heads).permute(0, 3, 1, 2, 4).contiguous()


def _probs(scores: torch.Tensor, attn: nn.Module) -> torch.Tensor:
    """Softmax in at least float32 (as transformers' attention does), back in the scores' input precision."""
    dtype = scores.dtype
    probs = scores.softmax(dim=-1, dtype=torch.promote_types(dtype, torch.float32)).to(dtype)
    return F.dropout(probs, p=attn.dropout, training=attn.training)
