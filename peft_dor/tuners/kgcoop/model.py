from __future__ import annotations

import torch

from ...prompting import PromptClassifierOutput, PromptCLIP, PromptTuner, knowledge_distance
from .layer import KgCoOpContextLayer


class KgCoOpModel(PromptTuner):
    """PEFT tuner for KgCoOp; build it with ``get_peft_model(clip, KgCoOpConfig(...))``.

    In training mode the forward adds ``losses["kg"]``; the frozen target features come from the base model with
    the prompts suspended (cached per class list and template), never from a second copy of CLIP.
    """

    prefix = "kgcoop_"
    layer_classes = {r"text_model\.embeddings": KgCoOpContextLayer}
    image_features_cacheable = True  # text-only prompts: the vision tower stays the frozen base model

    def method_losses(
        self, output: PromptClassifierOutput, wrapper: PromptCLIP, *, pixel_values=None, labels=None
    ) -> dict[str, torch.Tensor]:
        config = self.active_config()
        target = wrapper.frozen_text_features(wrapper.class_names, config.template)
        return {"kg": config.kg_weight * knowledge_distance(output.text_embeds, target)}
