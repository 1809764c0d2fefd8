from __future__ import annotations

from ...prompting import VISION_EMBEDDINGS, VISION_LAYERS, DeepPromptTuner
from .layer import VPTDeepVisionLayer, VPTVisionLayer


class VPTModel(DeepPromptTuner):
    """PEFT tuner for VPT; build it with ``get_peft_model(clip, VPTConfig(...))``.

    Only the vision tower is prompted. With no text prompt layer in the model, ``PromptCLIP`` classifies against the
    frozen template features, encoded once and cached (``zero_shot_text_features``).
    """

    prefix = "vpt_"
    layer_classes = {VISION_EMBEDDINGS: VPTVisionLayer, VISION_LAYERS: VPTDeepVisionLayer}
