from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import ContextPromptConfig, TrainingRecipe
from ...registry import DorPeftType


@dataclass
class CoCoOpConfig(ContextPromptConfig):
    """Configuration of CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted by a bias computed from each image.

    The prompt of image ``x`` is ``[SOS] (ctx_1 + π(x)) .. (ctx_n + π(x)) {class}. [EOS]``, where the meta-net
    ``π = Linear(D → D/16) → ReLU → Linear(D/16 → width)`` reads the L2-normalised projected image feature. Every
    image thus has its own class text features, and a step encodes ``batch × classes`` prompts: the official
    recipe trains at batch size 1 (see ``training_defaults``). Trainable parameters at ViT-B/16 size:
    ctx 2,048 + meta-net 33,312 = 35,360.

    Example:
        ```python
        model = get_peft_model(clip, peft_dor.CoCoOpConfig(class_names=["cat", "dog"]))  # ctx "a photo of a"
        ```
    """

    ctx_init: str | None = field(
        default="a photo of a",
        metadata={
            "help": "Phrase whose word embeddings initialise the context (CoCoOp: 'a photo of a'); None: random."
        },
    )
    meta_net_hidden_dim: int | None = field(
        default=None,
        metadata={"help": "Hidden width of the meta-net; None: projection_dim // 16 (32 for ViT-B/16), as in CoCoOp."},
    )

    default_n_ctx = 4
    default_target_modules = ("text_model.embeddings",)
    #: the official recipe (the DOR lab's is the same): batch 1, because every image has its own text features
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {"original": TrainingRecipe("sgd", 0.002, 1, 10)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.meta_net_hidden_dim is not None and (
            not isinstance(self.meta_net_hidden_dim, int) or self.meta_net_hidden_dim < 1
        ):
            raise ValueError(
                f"`meta_net_hidden_dim` must be a positive integer (or None for projection_dim // 16); "
                f"got {self.meta_net_hidden_dim!r}."
            )
        self.peft_type = DorPeftType.COCOOP
