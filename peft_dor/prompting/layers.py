"""The base class of every module a prompt method injects into CLIP."""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


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
