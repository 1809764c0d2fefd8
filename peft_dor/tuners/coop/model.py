from __future__ import annotations

from collections.abc import Sequence

from ...prompting import PromptTuner
from .layer import CoOpContextLayer


class CoOpModel(PromptTuner):
    """PEFT tuner for CoOp; build it with ``get_peft_model(clip, CoOpConfig(...))``."""

    prefix = "coop_"
    layer_classes = {r"text_model\.embeddings": CoOpContextLayer}
    image_features_cacheable = True  # text-only prompts: the vision tower stays the frozen base model

    def check_class_names(self, class_names: Sequence[str]) -> None:
        super().check_class_names(class_names)
        for name, config in self.peft_config.items():
            if config.class_specific and list(class_names) != list(config.class_names):
                raise ValueError(
                    f"Adapter {name!r} has class-specific context (class_specific=True) for its "
                    f"{len(config.class_names)} training classes; it cannot classify other class names. Train a "
                    "unified context (class_specific=False) for base-to-new evaluation."
                )
