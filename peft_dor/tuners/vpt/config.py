from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import DeepPromptConfigMixin, PromptConfig, TrainingRecipe, check_depth, check_number
from ...registry import DorPeftType


@dataclass
class VPTConfig(DeepPromptConfigMixin, PromptConfig):
    """Configuration of VPT (Jia et al., ECCV 2022) as used in the MaPLe code base: visual prompts only.

    ``vision_tokens`` learned tokens are appended after the patch tokens (after the position embeddings, before the
    pre-LayerNorm); VPT-deep gives every layer up to ``depth`` its own tokens, which overwrite the prompt positions at
    that layer's input. The text side is frozen CLIP with the hand-crafted ``template`` (``"a photo of a {}."`` for
    every dataset in the original), so the class text features are computed once and cached. Trainable parameters:
    ``vision_tokens * depth * width`` (6,144 shallow and 73,728 deep with 8 tokens on ViT-B/16). DOR acts on the
    image side (outlier images) because there is no text parameter to regularise.

    Example:
        ```python
        import peft_dor
        from peft import get_peft_model
        from transformers import CLIPModel

        clip = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")
        model = get_peft_model(clip, peft_dor.VPTConfig(class_names=["cat", "dog"], deep=True))  # 8 tokens, J=12
        ```
    """

    vision_tokens: int = field(default=8, metadata={"help": "Number of learned visual prompt tokens per layer (n_v)."})
    deep: bool = field(
        default=False,
        metadata={
            "help": "VPT-deep: every layer up to `depth` has its own prompts (also implied by depth > 1). False: "
            "VPT-shallow (depth 1)."
        },
    )
    depth: int | None = field(
        default=None,
        metadata={
            "help": "Number of vision layers with their own prompts (J). None: 1 when shallow, every layer of the "
            "vision tower (12 for ViT-B/16) when deep=True; filled in when the adapter is injected."
        },
    )
    ctx_std: float = field(default=0.02, metadata={"help": "Std of the normal random init of the prompt tokens."})

    #: the MaPLe repository's and the DOR lab's VPT-deep runs (8 tokens, depth 12), fp32
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe("sgd", 0.0025, 4, 5, note="deep=True, vision_tokens=8 (depth 12)")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = DorPeftType.VPT
        check_depth(self.vision_tokens, "vision_tokens")
        check_number(self.ctx_std, "ctx_std", strict=True, hint=" (the std of the random init, e.g. 0.02)")
        if self.depth is None and not self.deep:
            self.depth = 1
        if self.depth is not None:
            check_depth(self.depth, "depth")
            if self.deep and self.depth == 1:
                raise ValueError(
                    "`deep`=True contradicts `depth`=1 (shallow prompts). Give deep prompts depth > 1, or "
                    "depth=None for every layer of the vision tower."
                )
            self.deep = self.depth > 1  # `depth` alone may ask for deep prompts
        if not self.target_modules:
            self.target_modules = self.default_targets()

    def prompt_depths(self) -> dict[str, tuple[str, int | None]]:
        return {"vision": ("depth", self.depth)}

    def resolve_depth(self, field_name: str, n_layers: int) -> None:
        self.depth = n_layers
        if n_layers < 2:
            raise ValueError(f"deep=True needs a vision tower of 2 or more layers; this one has {n_layers}.")
