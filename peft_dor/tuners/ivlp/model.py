from __future__ import annotations

from ...prompting import TEXT_EMBEDDINGS, TEXT_LAYERS, VISION_EMBEDDINGS, VISION_LAYERS, DeepPromptTuner
from .layer import IVLPContextLayer, IVLPDeepTextLayer, IVLPDeepVisionLayer, IVLPVisionLayer


class IVLPModel(DeepPromptTuner):
    """PEFT tuner for IVLP; build it with ``get_peft_model(clip, IVLPConfig(...))``.

    One adapter covers both towers (PEFT allows one method type per model): the layer class is chosen per wrapped
    module, text or vision, input or deep.
    """

    prefix = "ivlp_"
    layer_classes = {
        TEXT_EMBEDDINGS: IVLPContextLayer,
        TEXT_LAYERS: IVLPDeepTextLayer,
        VISION_EMBEDDINGS: IVLPVisionLayer,
        VISION_LAYERS: IVLPDeepVisionLayer,
    }
