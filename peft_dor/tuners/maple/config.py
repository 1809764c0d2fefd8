from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import DeepContextPromptConfig, TrainingRecipe, check_depth
from ...registry import DorPeftType


@dataclass
class MaPLeConfig(DeepContextPromptConfig):
    """Configuration of MaPLe, multi-modal prompt learning (Khattak et al., CVPR 2023).

    Text: ``n_ctx`` context vectors at the input and, at each text layer ``1..depth-1``, the layer's own ``n_ctx``
    prompts overwriting the same slots. Vision: the prompts are *functions of* the text prompts: ``proj(ctx)``
    (``Linear(text width -> vision width)``) appended after the patch tokens, and ``F_i(P_i)`` overwriting the last
    ``n_ctx`` tokens at vision layer i. With the default ``ctx_init="a photo of a"`` and ``n_ctx=2`` the prompt is
    ``[SOS][ctx1][ctx2] of a {class}.[EOS]``: "of a" stays a fixed part of the prompt, as in the official code. The
    DOR lab's configs use an empty ``ctx_init`` (random init, ``[SOS][ctx1][ctx2] {class}.[EOS]``). ViT-B/16 with the
    defaults has 3,555,072 trainable parameters.

    Example:
        ```python
        import peft_dor
        from peft import get_peft_model
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")
        model = get_peft_model(clip, peft_dor.MaPLeConfig(class_names=["cat", "dog"]))  # 2 tokens, depth 9
        ```
    """

    default_n_ctx: ClassVar[int] = 2
    #: per source
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe("sgd", 0.0035, 4, 5),
        "dor_lab": TrainingRecipe("sgd", 0.0035, 4, 5, note="ctx_init=None (the DOR lab's empty init)"),
    }

    depth: int = field(
        default=9, metadata={"help": "Layers with their own prompts in both towers (J): the input and layers 1..J-1."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = DorPeftType.MAPLE
        check_depth(self.depth, "depth")

    def prompt_depths(self) -> dict[str, tuple[str, int | None]]:
        return {"text": ("depth", self.depth), "vision": ("depth", self.depth)}
