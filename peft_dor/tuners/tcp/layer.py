from __future__ import annotations

import torch
from torch import nn
from transformers.activations import QuickGELUActivation

from ...prompting import DeepTextPromptLayer, TextContextLayer, TextPromptContext, embed_dim

#: key of the frozen knowledge features of a pass's names in ``TextPromptContext.extras`` (``(P, D)``)
KNOWLEDGE_KEY = "tcp_knowledge"


class TCPContextLayer(TextContextLayer):
    """TCP's shared context in place of ``text_model.embeddings`` (random init, layers before the class tokens)."""

    adapter_layer_names = ("tcp_ctx",)


class TCPClassTokenLayer(DeepTextPromptLayer):
    """TCP's textual knowledge embedding (TKE) at ``text_model.encoder.layers[class_token_layer]``.

    At the layer's input the context slots are overwritten by ``TKE(t)`` reshaped to ``(n_ctx, width)`` per prompt,
    where ``t`` is the prompt's frozen knowledge feature that the tuner puts in ``extras["tcp_knowledge"]``. TKE is
    two ``nn.Linear`` per adapter (``tcp_tke_linear1`` / ``_linear2``, QuickGELU between).
    """

    adapter_layer_names = ("tcp_tke_linear1", "tcp_tke_linear2")
    module_layer_names = ("tcp_tke_linear1", "tcp_tke_linear2")

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        clip_config = wrapper.clip.config
        in_dim, width = embed_dim(clip_config), clip_config.text_config.hidden_size
        hidden = config.knowledge_hidden_dim or max(1, in_dim // 4)
        layout = config.prompt_layout()
        n_tokens = layout.n_ctx
        self.tcp_tke_linear1[adapter_name] = nn.Linear(in_dim, hidden)
        self.tcp_tke_linear2[adapter_name] = nn.Linear(hidden, n_tokens * width)
        self._finish_update(adapter_name)

    def prompt_vectors(self, adapter_name: str, context: TextPromptContext, n_rows: int) -> torch.Tensor:
        knowledge = context.extras.get(KNOWLEDGE_KEY)
        if knowledge is None:
            raise RuntimeError(
                "TCP's class tokens need the frozen knowledge features of the pass's names; encode text through the "
                "TCP model (its forward or encode_text), which prepares them."
            )
        first = self.tcp_tke_linear1[adapter_name]
        hidden = QuickGELUActivation()(first(knowledge.to(device=first.weight.device, dtype=first.weight.dtype)))
        tokens = self.tcp_tke_linear2[adapter_name](hidden)
        return tokens.reshape(knowledge.shape[0], -1, self.base_layer.embed_dim)
