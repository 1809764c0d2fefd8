"""IVLP's four prompt layers: text context, deep text prompts, visual prompts and deep visual prompts.

PromptSRC trains exactly these prompts (with extra losses), so its tuner reuses these classes and their parameter
names.
"""

from __future__ import annotations

from ...prompting import DeepTextPromptLayer, DeepVisionPromptLayer, TextContextLayer, VisionPromptLayer


class IVLPContextLayer(TextContextLayer):
    """The text context at the input (wraps ``text_model.embeddings``)."""

    adapter_layer_names = ("ivlp_ctx",)


class IVLPDeepTextLayer(DeepTextPromptLayer):
    """Text layer i's own prompts, overwriting context slots 1..n_ctx at its input (wraps
    ``text_model.encoder.layers[i]``)."""

    adapter_layer_names = ("ivlp_text_prompts",)


class IVLPVisionLayer(VisionPromptLayer):
    """The visual prompts appended after the patch tokens (wraps ``vision_model.embeddings``)."""

    adapter_layer_names = ("ivlp_vision_prompts",)


class IVLPDeepVisionLayer(DeepVisionPromptLayer):
    """Vision layer i's own prompts, overwriting the last ``vision_tokens`` tokens of its input."""

    adapter_layer_names = ("ivlp_vision_prompts",)
