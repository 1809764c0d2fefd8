from __future__ import annotations

from ...prompting import PromptTuner
from .layer import ProGradContextLayer


class ProGradModel(PromptTuner):
    """PEFT tuner for ProGrad; build it with ``get_peft_model(clip, ProGradConfig(...))``.

    The model is CoOp's; train it with ``DORTrainer`` (or any ``Trainer`` with ``ProGradMixin``), which applies the gradient projection at each optimiser step. A plain ``Trainer`` trains it
    as CoOp.
    """

    prefix = "prograd_"
    layer_classes = {r"text_model\.embeddings": ProGradContextLayer}
    image_features_cacheable = True  # text-only prompts: the vision tower stays the frozen base model
