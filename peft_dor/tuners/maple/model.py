from __future__ import annotations

from ...prompting import TEXT_EMBEDDINGS, TEXT_LAYERS, VISION_EMBEDDINGS, VISION_LAYERS, DeepPromptTuner
from .layer import (
    CoupledVisionPrompts,
    MaPLeContextLayer,
    MaPLeDeepTextLayer,
    MaPLeDeepVisionLayer,
    MaPLeVisionLayer,
)


class MaPLeModel(DeepPromptTuner):
    """PEFT tuner for MaPLe; build it with ``get_peft_model(clip, MaPLeConfig(...))``.

    One adapter covers both towers (PEFT allows one method type per model). After every injection (a new model,
    ``add_adapter``, ``load_adapter``) each vision layer is coupled to the text layer of the same depth, whose prompts
    it maps to its own.
    """

    prefix = "maple_"
    layer_classes = {
        TEXT_EMBEDDINGS: MaPLeContextLayer,
        TEXT_LAYERS: MaPLeDeepTextLayer,
        VISION_EMBEDDINGS: MaPLeVisionLayer,
        VISION_LAYERS: MaPLeDeepVisionLayer,
    }

    def inject_adapter(self, model, adapter_name: str, **kwargs) -> None:
        super().inject_adapter(model, adapter_name, **kwargs)
        deep_maps = []
        for name, layer in model.named_modules():
            if not isinstance(layer, CoupledVisionPrompts):
                continue
            text_name = name.replace("vision_model.", "text_model.", 1)
            try:
                text_layer = model.get_submodule(text_name)
            except AttributeError:
                text_layer = None
            if not isinstance(text_layer, (MaPLeContextLayer, MaPLeDeepTextLayer)):
                raise ValueError(
                    f"MaPLe's vision prompts at {name!r} are computed from the text prompts at {text_name!r}, which "
                    "is not a MaPLe text layer. Target the same depth in both towers (leave target_modules unset)."
                )
            layer.couple(text_layer)
            if isinstance(layer, MaPLeDeepVisionLayer) and adapter_name in layer.maple_vision_proj:
                deep_maps.append(layer.maple_vision_proj[adapter_name])
        # The official code builds F_1..F_{J-1} as deep copies of one randomly initialised Linear.
        for other in deep_maps[1:]:
            other.load_state_dict(deep_maps[0].state_dict())
