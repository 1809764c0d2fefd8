from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ...prompting import TextContextLayer


class ProGradContextLayer(TextContextLayer):
    """ProGrad's context in place of ``text_model.embeddings``: CoOp's, with ProGrad's zero-padded phrase init.

    With ``ctx_init`` of ``k`` tokens and ``n_ctx > k`` the prompt is ``X .. X <phrase> {class}.`` with all ``n_ctx``
    slots learned: the ``n_ctx − k`` placeholders start at zero, the phrase's slots at its word embeddings.
    """

    adapter_layer_names = ("prograd_ctx",)

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        n_pad = 0
        if config.initialises_from_phrase():
            n_pad = config.n_ctx - len(wrapper.prompt_tokenizer.piece_ids(config.ctx_init))
        if n_pad <= 0:  # random init, or a phrase at least n_ctx long (CoOp's behaviour)
            super().update_layer(adapter_name, config, wrapper)
            return
        # each "X" is one token for CLIP's tokenizer, so the padded phrase has exactly n_ctx tokens
        padded = replace(config, ctx_init=" ".join(["X"] * n_pad + [config.ctx_init]))
        super().update_layer(adapter_name, padded, wrapper)
        with torch.no_grad():
            self.ctx[adapter_name][:n_pad] = 0.0
