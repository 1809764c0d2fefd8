from __future__ import annotations

import torch
from torch import nn

from ...prompting import TextContextLayer, TextPromptContext, embed_dim


class CoCoOpContextLayer(TextContextLayer):
    """CoCoOp's context in place of ``text_model.embeddings``: ``ctx + π(image)``, one context per image.

    The meta-net ``π`` is two ``nn.Linear`` per adapter (``cocoop_meta_net_linear1`` / ``_linear2``, ReLU between),
    kept in separate ``ModuleDict``s so PEFT's checkpoint keys carry no adapter name. ``context_vectors`` returns
    ``(B, P, n, D)``; the text tower then encodes every prompt once per image in a single batched pass
    (``B × P`` sequences, chunked over prompts by the classifier's ``text_chunk_size``).
    """

    adapter_layer_names = ("cocoop_ctx", "cocoop_meta_net_linear1", "cocoop_meta_net_linear2")
    module_layer_names = ("cocoop_meta_net_linear1", "cocoop_meta_net_linear2")
    conditions_on_image = True

    def update_layer(self, adapter_name: str, config, wrapper: nn.Module) -> None:
        super().update_layer(adapter_name, config, wrapper)
        clip_config = wrapper.clip.config
        # π reads the projected image feature (projection_dim) and shifts token embeddings (text width)
        in_dim, width = embed_dim(clip_config), clip_config.text_config.hidden_size
        hidden = config.meta_net_hidden_dim or max(1, in_dim // 16)
        self.cocoop_meta_net_linear1[adapter_name] = nn.Linear(in_dim, hidden)
        self.cocoop_meta_net_linear2[adapter_name] = nn.Linear(hidden, width)
        self._finish_update(adapter_name)

    def meta_net(self, adapter_name: str, image_features: torch.Tensor) -> torch.Tensor:
        """``π(x)``: the ``(B, width)`` shift of the context for each image feature."""
        hidden = torch.relu(self.cocoop_meta_net_linear1[adapter_name](image_features))
        return self.cocoop_meta_net_linear2[adapter_name](hidden)

    def context_shared_across_prompts(self) -> bool:
        # ctx + π(x) differs between images but is the same for every prompt of an image
        return True

    def context_vectors(self, adapter_name: str, context: TextPromptContext) -> torch.Tensor:
        if context.image_features is None:
            raise ValueError(
                "CoCoOp's prompts depend on the image: encode text through the model's forward (pixel_values=...) or "
                "pass `image_features` to `encode_text`."
            )
        ctx = self.ctx[adapter_name]
        bias = self.meta_net(adapter_name, context.image_features.to(device=ctx.device, dtype=ctx.dtype))
        shifted = ctx.unsqueeze(0) + bias.unsqueeze(1)  # the same bias on every context token: (B, n, D)
        return shifted.unsqueeze(1).expand(-1, len(context.prompts), -1, -1)
