from __future__ import annotations

import torch

from ...prompting import (
    PromptClassifierOutput,
    PromptCLIP,
    PromptTuner,
    TextPromptContext,
    knowledge_distance,
)
from .layer import KNOWLEDGE_KEY, TCPClassTokenLayer, TCPContextLayer


class TCPModel(PromptTuner):
    """PEFT tuner for TCP; build it with ``get_peft_model(clip, TCPConfig(...))``.

    Before each text pass it looks up frozen CLIP's features of ``template`` for the pass's names (classes, new
    classes or DOR outliers alike; ``PromptCLIP.frozen_text_features``, one cached row per name) for the class-token layer; in training mode the forward adds
    ``losses["tcp"]``.
    """

    prefix = "tcp_"
    layer_classes = {
        r"text_model\.embeddings": TCPContextLayer,
        r"text_model\.encoder\.layers\.\d+": TCPClassTokenLayer,
    }
    image_features_cacheable = True  # text-only prompts: the vision tower stays the frozen base model

    def _post_injection_hook(self, model, config, adapter_name: str) -> None:
        n_layers = model.clip.config.text_config.num_hidden_layers
        if config.class_token_layer >= n_layers:
            raise ValueError(
                f"`class_token_layer`={config.class_token_layer} but the text tower has only {n_layers} layers "
                f"(0..{n_layers - 1}); pick a layer inside it (TCP uses 8 of 12)."
            )
        super()._post_injection_hook(model, config, adapter_name)

    def prepare_text_context(self, context: TextPromptContext, wrapper: PromptCLIP) -> None:
        if context.prompts.slot_index is None:  # prompts off: plain template, no class tokens
            return
        # one row per name, cached: DOR's outliers change every step, each word is encoded once per run
        context.extras[KNOWLEDGE_KEY] = wrapper.frozen_text_features(
            context.names, self.active_config().template, cache="names"
        )

    def method_losses(
        self, output: PromptClassifierOutput, wrapper: PromptCLIP, *, pixel_values=None, labels=None
    ) -> dict[str, torch.Tensor]:
        config = self.active_config()
        target = wrapper.frozen_text_features(wrapper.class_names, config.template)
        return {"tcp": config.knowledge_weight * knowledge_distance(output.text_embeds, target)}
