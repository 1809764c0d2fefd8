from __future__ import annotations

from ...prompting import PromptTuner
from .layer import CoCoOpContextLayer


class CoCoOpModel(PromptTuner):
    """PEFT tuner for CoCoOp; build it with ``get_peft_model(clip, CoCoOpConfig(...))``.

    Text features are per image (``output.text_embeds`` is ``(B, C, D)``), including DOR's outliers
    (``output.extra_text_embeds`` is ``(B, K, D)``): each outlier prompt is conditioned on every image of the batch.
    """

    prefix = "cocoop_"
    layer_classes = {r"text_model\.embeddings": CoCoOpContextLayer}
    # the meta-net reads the projected image feature of the untouched vision tower, so cached features are exact
    image_features_cacheable = True
