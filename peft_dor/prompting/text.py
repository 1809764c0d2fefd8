"""How a text prompt reaches CLIP's text tower.

Every prompt method shares the same three facts about CLIP's text tower (transformers 5.x):

* the pooled feature is the final-LayerNorm row at the EOS token, whose index comes from the token ids, so learned
  vectors must *replace* placeholder slots (inserting would move EOS);
* attention is causal, so rows after EOS never influence the EOS row: padding every prompt of a batch to the
  longest prompt (instead of CLIP's 77) gives bit-for-bit the same features for a fraction of the work;
* ``CLIPTextModel.forward`` accepts no ``inputs_embeds``, so the tower is driven layer by layer here, and an explicit
  causal mask must then be passed (SDPA only applies causality when transformers builds the mask itself).

Methods plug in through prompt layers (``PromptLayer`` subclasses) that PEFT injects in place of CLIP modules. The
text loop below hands each of them a :class:`TextPromptContext` telling it which slots to overwrite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import PromptLayer

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


@dataclass(frozen=True)
class PromptLayout:
    """Where learned context vectors sit in a prompt.

    The prompt is ``[SOS] <prefix tokens> <name tokens> <suffix tokens> [EOS]`` (for ``class_token_position="end"``);
    the first ``n_ctx`` prefix tokens are the learnable slots, the remaining prefix tokens stay fixed words (the
    MaPLe/IVLP quirk where only "a photo" of "a photo of a" is learned).

    Args:
        prefix: the words whose token slots carry the context: an init phrase such as ``"a photo of a"`` or
            ``n_ctx`` placeholder words ``"X X X X"``.
        n_ctx: how many of the prefix's tokens are learned slots (the first ``n_ctx``).
        class_token_position: ``"end"``, ``"middle"`` or ``"front"`` (CoOp's options).
        suffix: text after the class name, ``"."`` in every official method.
    """

    prefix: str
    n_ctx: int
    class_token_position: str = "end"
    suffix: str = "."


@dataclass
class TokenizedPrompts:
    """A batch of prompts as token ids padded to the longest prompt of the batch.

    Attributes:
        input_ids: ``(P, L)`` token ids, ``L`` the longest prompt (not the tower's 77).
        eos_index: ``(P,)`` position of the EOS token in each row.
        slot_index: ``(P, n_ctx)`` positions of the learned context slots, or ``None`` for plain templates.
    """

    input_ids: torch.LongTensor
    eos_index: torch.LongTensor
    slot_index: torch.LongTensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> TokenizedPrompts:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TokenizedPrompts(move(self.input_ids), move(self.eos_index), move(self.slot_index))

    def select(self, rows: slice) -> TokenizedPrompts:
        """Rows ``rows`` of the batch, re-padded to their own longest prompt."""
        eos = self.eos_index[rows]
        length = int(eos.max().item()) + 1 if len(eos) else 1
        slots = None if self.slot_index is None else self.slot_index[rows]
        return TokenizedPrompts(self.input_ids[rows, :length], eos, slots)


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


class PromptTokenizer:
    """Builds :class:`TokenizedPrompts` with a CLIP tokenizer, caching the token ids of every text it has seen.

    Token ids are assembled piece by piece (``[SOS] + prefix + name + suffix + [EOS]``). CLIP's BPE pre-tokenizer
    splits on whitespace and punctuation, so for ordinary names this equals tokenising the joined string (tested),
    while letting us know exactly where each slot is. (A name ending in punctuation can merge differently with the
    suffix than in the joined string; the prompt is still well-formed, with EOS last.)

    Args:
        tokenizer: a CLIP tokenizer (``CLIPTokenizer`` or its fast variant).
        context_length: the text tower's ``max_position_embeddings`` (77 for OpenAI CLIP).
    """

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pieces: dict[str, list[int]] = {}

    def piece_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (cached)."""
        ids = self._pieces.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else []
            self._pieces[text] = ids
        return ids

    def _check_plain(self, ids: list[int], text: str) -> None:
        # CLIP's tokenizer turns "<|endoftext|>" typed in a name into the real special token: a second EOS mid-prompt.
        if self.eos_id in ids or self.bos_id in ids:
            raise ValueError(
                f"{text!r} contains the text of CLIP's special tokens ('<|startoftext|>' or '<|endoftext|>'), which the "
                "tokenizer would turn into real start/end tokens inside the prompt. Remove them from the class name or "
                "template."
            )

    def _check_length(self, n_tokens: int, text: str, hint: str) -> None:
        if n_tokens > self.context_length:
            raise ValueError(
                f"The prompt {text!r} is {n_tokens} tokens long but the text tower takes at most "
                f"{self.context_length}. {hint}"
            )

    def template_prompts(self, names: Sequence[str], template: str) -> TokenizedPrompts:
        """Hand-crafted prompts ``template.format(name)``, e.g. ``"a photo of a {}."``."""
        rows = []
        for name in names:
            text = template.format(name)
            pieces = self.piece_ids(text)
            self._check_plain(pieces, text)
            ids = [self.bos_id, *pieces, self.eos_id]
            self._check_length(len(ids), text, "Use a shorter class name or template.")
            rows.append(ids)
        return self._pad(rows)

    def layout_prompts(self, names: Sequence[str], layout: PromptLayout) -> TokenizedPrompts:
        """Prompts with learnable context slots, laid out as ``layout`` says."""
        prefix = self.piece_ids(layout.prefix)
        if layout.n_ctx > len(prefix):
            raise ValueError(
                f"n_ctx={layout.n_ctx} but the context phrase {layout.prefix!r} has only {len(prefix)} tokens; "
                "use a longer ctx_init or a smaller n_ctx."
            )
        suffix = self.piece_ids(layout.suffix)
        self._check_plain(prefix + suffix, f"{layout.prefix} {{}}{layout.suffix}")
        rows, slots = [], []
        for name in names:
            name_ids = self.piece_ids(name)
            self._check_plain(name_ids, name)
            if layout.class_token_position == "end":
                pieces = [prefix, name_ids]
                prefix_start = 1
            elif layout.class_token_position == "front":
                pieces = [name_ids, prefix]
                prefix_start = 1 + len(name_ids)
            else:  # middle: the class name splits the learned context in two halves (CoOp)
                half = layout.n_ctx // 2
                pieces = [prefix[:half], name_ids, prefix[half:]]
                prefix_start = None
            ids = [self.bos_id, *[i for piece in pieces for i in piece], *suffix, self.eos_id]
            if prefix_start is None:
                half = layout.n_ctx // 2
                positions = list(range(1, 1 + half)) + list(
                    range(1 + half + len(name_ids), 1 + len(name_ids) + layout.n_ctx)
                )
            else:
                positions = list(range(prefix_start, prefix_start + layout.n_ctx))
            self._check_length(
                len(ids), f"{layout.prefix} {name}{layout.suffix}", "Use a shorter class name or fewer context tokens."
            )
            rows.append(ids)
            slots.append(positions)
        prompts = self._pad(rows)
        prompts.slot_index = torch.tensor(slots, dtype=torch.long).reshape(len(rows), layout.n_ctx)
        return prompts

    def _pad(self, rows: list[list[int]]) -> TokenizedPrompts:
        # Pad to the longest prompt of this batch, not to the tower's context length: with a causal mask and EOS
        # pooling the padded positions never reach the pooled row, so the features are identical (tested).
        length = max((len(r) for r in rows), default=1)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        eos = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
        return TokenizedPrompts(ids, eos)


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


class TextTower:
    """Runs CLIP's text tower by hand so prompt layers receive their :class:`TextPromptContext`.

    Only orchestration lives here: the token embedding, encoder layers, final LayerNorm and projection are CLIP's
    own modules (or the prompt layers PEFT put in their place).
    """

    def __init__(self, clip: nn.Module):
        self.clip = clip

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
        mask = causal_mask(hidden.shape[1], hidden.dtype, hidden.device)
        for layer in text.encoder.layers:
            kwargs = {"prompt_context": context} if getattr(layer, "is_prompt_layer", False) else {}
            if checkpointing and torch.is_grad_enabled():
                hidden = checkpoint(_call_layer, layer, hidden, mask, kwargs, use_reentrant=False)
            else:
                hidden = layer(hidden, mask, **kwargs)
        hidden = text.final_layer_norm(hidden)
        pooled = pool_eos(hidden, prompts.eos_index.repeat(repeats))
        return self.clip.text_projection(pooled)


def _call_layer(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, kwargs: dict) -> torch.Tensor:
    return layer(hidden, mask, **kwargs)


class TextContextLayer(PromptLayer):
    """Learned context vectors that replace slots of the token embeddings (CoOp's prompt; every text method's layer 0).

    Wraps ``text_model.embeddings``. Called with a :class:`TextPromptContext` whose prompts carry ``slot_index``, it
    embeds the tokens, overwrites the slots with the active adapter's context and lets CLIP add the position
    embeddings. Called any other way (e.g. by ``CLIPModel.get_text_features``) it is CLIP's embeddings module.

    Subclasses name the parameter dict after their method (``adapter_layer_names = ("coop_ctx",)``) and may override
    :meth:`context_vectors` to condition the context (CoCoOp) or add per-class vectors.
    """

    other_param_names = ("prompt_layout",)
    #: whether the context depends on the image (CoCoOp); text features are then computed per image
    conditions_on_image = False

    @property
    def ctx(self) -> nn.ParameterDict:
        return getattr(self, self.adapter_layer_names[0])

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        layout = config.prompt_layout()
        token_embedding = self.base_layer.token_embedding
        prefix_ids = wrapper.prompt_tokenizer.piece_ids(layout.prefix)
        if layout.n_ctx is None:
            layout = replace(layout, n_ctx=len(prefix_ids))
        if layout.n_ctx > len(prefix_ids):
            raise ValueError(
                f"n_ctx={layout.n_ctx} but ctx_init={layout.prefix!r} has only {len(prefix_ids)} tokens; "
                "use a longer ctx_init or a smaller n_ctx."
            )
        width = token_embedding.weight.shape[1]
        if config.initialises_from_phrase():
            init = token_embedding.weight[prefix_ids[: layout.n_ctx]].detach().float().clone()
        else:
            init = torch.randn(layout.n_ctx, width) * config.ctx_std
        if getattr(config, "class_specific", False):
            n_classes = len(wrapper.class_names)
            init = (
                init.expand(n_classes, -1, -1).clone()
                if config.initialises_from_phrase()
                else (torch.randn(n_classes, layout.n_ctx, width) * config.ctx_std)
            )
        self.ctx[adapter_name] = nn.Parameter(init)
        self.prompt_layout[adapter_name] = layout
        self._finish_update(adapter_name)

    def layout(self) -> PromptLayout | None:
        """The active adapter's prompt layout, or ``None`` when prompts are off (zero-shot template instead)."""
        adapter = self.active_prompt_adapter()
        return None if adapter is None else self.prompt_layout[adapter]

    def context_vectors(self, adapter_name: str, context: TextPromptContext) -> torch.Tensor:
        """The context of every prompt, ``(R, P, n_ctx, D)``; ``R`` > 1 when prompts are conditioned on images."""
        ctx = self.ctx[adapter_name]
        n_prompts = len(context.prompts)
        if ctx.dim() == 2:
            return ctx[None, None].expand(1, n_prompts, -1, -1)
        index = context.class_index
        if index is None or bool((index < 0).any()):
            raise ValueError(
                "Class-specific context (class_specific=True) only exists for the training classes; it cannot encode "
                "other names (new classes, DOR outliers). Use a unified context (class_specific=False) for those."
            )
        return ctx[index.to(ctx.device)][None]

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None, prompt_context=None):
        adapter = self.active_prompt_adapter()
        if adapter is None or prompt_context is None or prompt_context.prompts.slot_index is None:
            return self.base_layer(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        tokens = self.base_layer.token_embedding(input_ids)
        ctx = self.context_vectors(adapter, prompt_context)
        repeats, n_prompts = ctx.shape[0], tokens.shape[0]
        tokens = tokens.unsqueeze(0).expand(repeats, -1, -1, -1).reshape(repeats * n_prompts, *tokens.shape[1:])
        slots = prompt_context.prompts.slot_index.to(tokens.device).repeat(repeats, 1)
        embeds = replace_slots(tokens, slots, ctx.reshape(repeats * n_prompts, *ctx.shape[2:]))
        return self.base_layer(inputs_embeds=embeds)


class DeepTextPromptLayer(PromptLayer):
    """Deep text prompts: wraps ``text_model.encoder.layers[i]`` and overwrites the context slots of the hidden
    states at that layer's input with the layer's own vectors (no position embedding), then runs the layer.

    Serves IVLP, MaPLe and PromptSRC (``n`` learned vectors per layer, replacing slots ``1..n``) and TCP (class-aware
    tokens computed per prompt; override :meth:`prompt_vectors`). Subclasses name the parameter dict after their
    method, e.g. ``adapter_layer_names = ("maple_text_prompts",)``, and the config says how many tokens via
    ``deep_text_tokens``.
    """

    @property
    def prompts(self) -> nn.ParameterDict:
        return getattr(self, self.adapter_layer_names[0])

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        width = wrapper.clip.config.text_config.hidden_size
        self.prompts[adapter_name] = nn.Parameter(torch.randn(config.deep_text_tokens, width) * config.ctx_std)
        self._finish_update(adapter_name)

    def prompt_vectors(self, adapter_name: str, context: TextPromptContext, n_rows: int) -> torch.Tensor:
        """Vectors for the slots, ``(n, D)`` shared or ``(n_rows, n, D)`` per prompt."""
        return self.prompts[adapter_name]

    def forward(self, hidden_states, attention_mask, prompt_context=None, **kwargs):
        adapter = self.active_prompt_adapter()
        if adapter is None or prompt_context is None or prompt_context.prompts.slot_index is None:
            return self.base_layer(hidden_states, attention_mask, **kwargs)
        vectors = self.prompt_vectors(adapter, prompt_context, hidden_states.shape[0])
        n_tokens = vectors.shape[-2]
        slots = prompt_context.prompts.slot_index[:, :n_tokens].to(hidden_states.device)
        slots = slots.repeat(hidden_states.shape[0] // slots.shape[0], 1)
        hidden_states = replace_slots(hidden_states, slots, vectors)
        return self.base_layer(hidden_states, attention_mask, **kwargs)
