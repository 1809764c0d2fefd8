"""The prompt layers: the PEFT layer base and the text / vision layer bases every method subclasses.

* :class:`PromptLayer` is a PEFT tuner layer that wraps one CLIP module and holds one method's tensors per adapter;
* :class:`TextContextLayer` (wraps ``text_model.embeddings``) and :class:`DeepTextPromptLayer` (wraps
  ``text_model.encoder.layers[i]``) overwrite the prompts' learned slots;
* :class:`VisionPromptLayer` (wraps ``vision_model.embeddings``) appends visual prompt tokens and
  :class:`DeepVisionPromptLayer` (wraps ``vision_model.encoder.layers[i]``) overwrites them at a deeper layer.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .text import TextPromptContext, replace_slots
from .tokenizer import PromptLayout
from .vision import append_prompts, replace_last_tokens


class PromptLayer(nn.Module, BaseTunerLayer):
    """A PEFT tuner layer that wraps one CLIP module and holds one method's prompt parameters per adapter.

    Subclasses declare ``adapter_layer_names`` (their ``nn.ParameterDict`` / ``nn.ModuleDict`` attributes, named
    with the method's prefix so PEFT saves exactly them) and implement ``update_layer`` and ``forward``. The layer
    falls back to the wrapped module when adapters are disabled (``PeftModel.disable_adapter()``), when no adapter of
    this layer is active, or while the classifier computes zero-shot features (``suspended``).
    """

    is_prompt_layer = True
    adapter_layer_names: tuple[str, ...] = ()
    # the subset of ``adapter_layer_names`` that hold modules (e.g. CoCoOp's meta-net); the rest hold parameters
    module_layer_names: tuple[str, ...] = ()
    other_param_names: tuple[str, ...] = ()

    def __init__(self, base_layer: nn.Module, **kwargs: Any) -> None:
        nn.Module.__init__(self)
        self.base_layer = base_layer
        # Plain attribute, not a buffer: DDP would otherwise broadcast it, and it must never be saved.
        self.suspended = False
        self.kwargs = kwargs
        for name in self.adapter_layer_names:
            setattr(self, name, nn.ModuleDict() if name in self.module_layer_names else nn.ParameterDict())
        for name in self.other_param_names:
            setattr(self, name, {})

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def active_prompt_adapter(self) -> str | None:
        """The adapter whose prompts this call should use, or ``None`` to behave like the wrapped module."""
        if self.disable_adapters or self.suspended:
            return None
        available = getattr(self, self.adapter_layer_names[0])
        for name in self.active_adapters:
            if name in available:
                return name
        return None

    def _finish_update(self, adapter_name: str) -> None:
        """Place the new adapter's tensors next to the base weights, in float32, and refresh requires_grad."""
        device = next(self.base_layer.parameters()).device
        for attr in self.adapter_layer_names:
            container = getattr(self, attr)
            if adapter_name in container:
                container[adapter_name] = container[adapter_name].to(device=device, dtype=torch.float32)
        self.set_adapter(self.active_adapters)

    def merge(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError("Prompt adapters add tokens to CLIP's input; they cannot be merged into its weights.")

    def unmerge(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError("Prompt adapters are never merged, so there is nothing to unmerge.")


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

    def context_shared_across_prompts(self) -> bool:
        """Whether every prompt of a pass gets the same context vectors (per image, for image-conditioned context).

        True for a unified context; False for class-specific context and, to be safe, for any subclass that overrides
        :meth:`context_vectors` without overriding this. Prefix sharing (``peft_dor.prompting.prefix``) relies on it.
        """
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return True  # the layer is CLIP's embeddings: token ids only
        unchanged = type(self).context_vectors is TextContextLayer.context_vectors
        return unchanged and self.ctx[adapter].dim() == 2

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

    def slot_vectors(
        self, context: TextPromptContext | None, n_rows: int
    ) -> tuple[torch.LongTensor, torch.Tensor] | None:
        """What this layer writes at its input for the pass ``context`` of ``n_rows`` sequences, or ``None`` when it
        behaves like the wrapped layer.

        Returns:
            ``(slot_index, vectors)``: the ``(P, n)`` positions of each prompt it overwrites and the vectors,
            ``(n, D)`` when every prompt gets the same ones or ``(n_rows, n, D)`` per prompt (TCP's class tokens).
            Prefix sharing (``peft_dor.prompting.prefix``) reads the shape to know whether the vectors are shared.
        """
        adapter = self.active_prompt_adapter()
        if adapter is None or context is None or context.prompts.slot_index is None:
            return None
        vectors = self.prompt_vectors(adapter, context, n_rows)
        return context.prompts.slot_index[:, : vectors.shape[-2]], vectors

    def overwrite_slots(
        self, hidden: torch.Tensor, slot_index: torch.LongTensor, vectors: torch.Tensor
    ) -> torch.Tensor:
        """``hidden`` with ``slot_index``'s positions set to ``vectors`` (out of place); the ``(P, n)`` positions are
        repeated when each prompt runs once per image (``hidden`` has ``R * P`` rows)."""
        slots = slot_index.to(hidden.device)
        slots = slots.repeat(hidden.shape[0] // slots.shape[0], 1)
        return replace_slots(hidden, slots, vectors)

    def forward(self, hidden_states, attention_mask, prompt_context=None, **kwargs):
        written = self.slot_vectors(prompt_context, hidden_states.shape[0])
        if written is not None:
            hidden_states = self.overwrite_slots(hidden_states, *written)
        return self.base_layer(hidden_states, attention_mask, **kwargs)


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
