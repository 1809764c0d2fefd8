from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import ContextPromptConfig, TrainingRecipe, check_number
from ...registry import DorPeftType


@dataclass
class KgCoOpConfig(ContextPromptConfig):
    """Configuration of KgCoOp (Yao et al., CVPR 2023): CoOp plus a knowledge-guided loss towards hand-crafted prompts.

    Training adds ``kg_weight · (1 − mean_i cos(w_i, w_i^clip))`` (reported as ``output.losses["kg"]``), where
    ``w_i`` is the prompted feature of class ``i`` and ``w_i^clip`` frozen CLIP's feature of ``template`` for it
    (KgCoOp's per-dataset templates, e.g. ``"a photo of a {}, a type of texture."`` for DTD; computed once per class
    list from the same base model with prompts off). This is the official code's form: the paper's
    ``λ·||w − w^clip||²`` equals ``2λ(1 − cos)`` for unit vectors, so the code's 8.0 is the paper's λ = 4.
    Trainable parameters: the context only (2,048 at ViT-B/16 size).

    Example:
        ```python
        texture = "a photo of a {}, a type of texture."
        model = get_peft_model(clip, peft_dor.KgCoOpConfig(class_names=["banded", "dotted"], template=texture))
        ```
    """

    ctx_init: str | None = field(default="a photo of a", metadata={"help": "KgCoOp hard-wires it; None: random."})
    kg_weight: float = field(
        default=8.0,
        metadata={"help": "Weight W of 1 - mean cos; the official scripts pass 8.0 (the code's default is 1.0)."},
    )

    default_n_ctx = 4
    default_target_modules = ("text_model.embeddings",)
    #: per source
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe("sgd", 0.002, 128, 100),
        "dor_lab": TrainingRecipe("sgd", 0.002, 32, 200),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.kg_weight, "kg_weight", hint=" (KgCoOp uses 8.0)")
        self.peft_type = DorPeftType.KGCOOP
