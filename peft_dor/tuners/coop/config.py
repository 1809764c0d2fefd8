from __future__ import annotations

from dataclasses import dataclass, field

from ...prompting import ContextPromptConfig
from ...registry import DorPeftType


@dataclass
class CoOpConfig(ContextPromptConfig):
    """Configuration of CoOp (Zhou et al., IJCV 2022): learned context words in front of the class name.

    The prompt is ``[SOS] ctx_1 .. ctx_n {class}. [EOS]``; only the context vectors train (``n_ctx * width``
    parameters, ``n_classes * n_ctx * width`` with ``class_specific=True``).

    Example:
        ```python
        import peft_dor
        from peft import get_peft_model
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")
        config = peft_dor.CoOpConfig(class_names=["cat", "dog"], ctx_init="a photo of a")
        model = get_peft_model(clip, config)
        ```
    """

    class_specific: bool = field(
        default=False,
        metadata={
            "help": "One context per class (CSC). Few-shot only: a class-specific context cannot encode new classes "
            "or DOR outliers."
        },
    )

    default_target_modules = ("text_model.embeddings",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = DorPeftType.COOP
