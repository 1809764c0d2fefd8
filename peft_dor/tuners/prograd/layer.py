from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ...prompting import TextContextLayer, phrase_words


class ProGradContextLayer(TextContextLayer):
    """ProGrad's context in place of ``text_model.embeddings``: CoOp's, with ProGrad's zero-padded phrase init.

    With ``ctx_init`` of ``k`` words and ``n_ctx > k`` the prompt is ``X .. X <phrase> {class}.`` whose first ``n_ctx``
    slots are learned: the ``n_ctx − k`` placeholders start at zero, the next ``k`` at the phrase's first ``k`` token
    embeddings; tokens of the phrase beyond them (a word of two tokens) stay fixed words, as in the official code.
    """

    adapter_layer_names = ("prograd_ctx",)

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        n_pad = 0
        if config.initialises_from_phrase():
            n_pad = config.n_ctx - phrase_words(config.ctx_init)  # the official code counts words, not tokens
        if n_pad <= 0:  # random init, or a phrase at least n_ctx long (CoOp's behaviour)
            super().update_layer(adapter_name, config, wrapper)
            return
        # each "X" is one token for CLIP's tokenizer, so the first n_ctx tokens are the pads and the phrase's first k
        padded = replace(config, ctx_init=" ".join(["X"] * n_pad + [config.ctx_init]))
        super().update_layer(adapter_name, padded, wrapper)
        with torch.no_grad():
            self.ctx[adapter_name][:n_pad] = 0.0
