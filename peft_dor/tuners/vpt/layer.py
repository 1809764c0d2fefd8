from __future__ import annotations

from ...prompting import DeepVisionPromptLayer, VisionPromptLayer


class VPTVisionLayer(VisionPromptLayer):
    """VPT's layer-0 prompts, appended after the patch tokens of ``vision_model.embeddings``."""

    adapter_layer_names = ("vpt_prompts",)


class VPTDeepVisionLayer(DeepVisionPromptLayer):
    """VPT-deep: a vision encoder layer's own prompts, overwriting the last ``vision_tokens`` tokens of its input."""

    adapter_layer_names = ("vpt_prompts",)
