from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import DeepContextPromptConfig, TrainingRecipe, check_depth
from ...registry import DorPeftType


@dataclass
class IVLPConfig(DeepContextPromptConfig):
    """Configuration of IVLP, independent vision-language prompting (Khattak et al., CVPR 2023, MaPLe's baseline).

    Text: ``n_ctx`` context vectors replace the first ``n_ctx`` slots of the prompt at the input, and every text layer
    ``1..text_depth-1`` overwrites those slots with its own vectors. With ``ctx_init="a photo of a"`` and
    ``n_ctx <= 4`` the context starts as the first ``n_ctx`` words and the rest of the phrase stays fixed (``n_ctx=2``
    gives ``[SOS][ctx1][ctx2] of a {class}.[EOS]``). Vision: VPT-deep with ``vision_tokens`` tokens up to
    ``vision_depth``, not coupled to the text prompts. The defaults are PromptSRC's 4+4 baseline at depth 9/9
    (46,080 parameters on ViT-B/16); the 2+2 variant is ``n_ctx=2, vision_tokens=2, text_depth=12,
    vision_depth=12`` (30,720), and deep language prompting is ``text_depth=12, vision_tokens=0``.

    Example:
        ```python
        import peft_dor
        from peft import get_peft_model
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")
        model = get_peft_model(clip, peft_dor.IVLPConfig(class_names=["cat", "dog"]))  # 4+4 tokens, depth 9/9
        ```
    """

    default_n_ctx: ClassVar[int] = 4
    #: the three published IVLP configurations (their prompt settings are in each note)
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "4+4": TrainingRecipe("sgd", 0.0025, 4, 20, note="the defaults: PromptSRC's baseline"),
        "2+2": TrainingRecipe("sgd", 0.0035, 4, 5, note="n_ctx=2, vision_tokens=2, text_depth=12, vision_depth=12"),
        "deep_language": TrainingRecipe("sgd", 0.0025, 4, 5, note="text_depth=12, vision_tokens=0"),
    }

    text_depth: int = field(
        default=9, metadata={"help": "Text layers with their own prompts (J_t): the input and layers 1..J_t-1."}
    )
    vision_tokens: int = field(
        default=4, metadata={"help": "Number of visual prompt tokens per layer (n_v); 0 prompts the text only."}
    )
    vision_depth: int = field(
        default=9, metadata={"help": "Vision layers with their own prompts (J_v): the input and layers 1..J_v-1."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = self.method_peft_type()
        check_depth(self.text_depth, "text_depth")
        check_depth(self.vision_tokens, "vision_tokens", minimum=0)
        check_depth(self.vision_depth, "vision_depth")

    @classmethod
    def method_peft_type(cls) -> DorPeftType:
        return DorPeftType.IVLP

    def prompt_depths(self) -> dict[str, tuple[str, int | None]]:
        return {
            "text": ("text_depth", self.text_depth),
            "vision": ("vision_depth", self.vision_depth if self.vision_tokens else 0),
        }
