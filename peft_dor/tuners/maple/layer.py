"""MaPLe's layers: text prompts as usual, and vision layers whose prompts are linear maps of the text prompts."""

from __future__ import annotations

import torch
from torch import nn

from ...prompting import DeepTextPromptLayer, DeepVisionPromptLayer, PromptLayer, TextContextLayer, VisionPromptLayer


class MaPLeContextLayer(TextContextLayer):
    """The text context at the input (wraps ``text_model.embeddings``); ``proj`` maps it to the layer-0 visual prompts."""

    adapter_layer_names = ("maple_ctx",)


class MaPLeDeepTextLayer(DeepTextPromptLayer):
    """Text layer i's prompts ``P_i`` (wraps ``text_model.encoder.layers[i]``); ``F_i(P_i)`` are vision layer i's."""

    adapter_layer_names = ("maple_text_prompts",)


class CoupledVisionPrompts:
    """Mixin for MaPLe's vision layers: the prompts are ``Linear(text width -> vision width)`` of the text prompts of
    the same depth, read from the text layer the tuner couples in with :meth:`couple`.

    The text layer is held as a plain attribute, not a submodule: its parameters are registered, trained and saved
    once, in the text tower, and the vision layer only reads them during its forward.
    """

    adapter_layer_names = ("maple_vision_proj",)
    module_layer_names = ("maple_vision_proj",)
    text_source: PromptLayer | None = None

    def couple(self, text_layer: PromptLayer) -> None:
        self.__dict__["text_source"] = text_layer  # bypasses nn.Module.__setattr__, which would register it

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        widths = wrapper.clip.config.text_config.hidden_size, wrapper.clip.config.vision_config.hidden_size
        self.maple_vision_proj[adapter_name] = nn.Linear(*widths)
        self._finish_update(adapter_name)

    def prompt_vectors(self, adapter_name: str) -> torch.Tensor:
        source = self.text_source
        if source is None:
            raise RuntimeError("This MaPLe vision layer is not coupled to its text layer; build it with MaPLeModel.")
        text_prompts = getattr(source, source.adapter_layer_names[0])[adapter_name]
        return self.maple_vision_proj[adapter_name](text_prompts)


class MaPLeVisionLayer(CoupledVisionPrompts, VisionPromptLayer):
    """Layer-0 visual prompts ``proj(ctx)``, appended after the patch tokens (wraps ``vision_model.embeddings``)."""


class MaPLeDeepVisionLayer(CoupledVisionPrompts, DeepVisionPromptLayer):
    """Vision layer i's prompts ``F_i(P_i)``, overwriting the last ``n_ctx`` tokens of its input."""
