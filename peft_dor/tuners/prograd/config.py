from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import ContextPromptConfig, TrainingRecipe, check_number
from ...registry import DorPeftType


@dataclass
class ProGradConfig(ContextPromptConfig):
    """Configuration of ProGrad (Zhu et al., ICCV 2023): CoOp's prompt trained with prompt-aligned gradients.

    The model is CoOp's (16 context tokens, class at the end). What differs is the update, applied by
    :class:`~peft_dor.tuners.prograd.ProGradMixin`, which ``DORTrainer`` composes for a ProGrad model: per parameter tensor, when the training
    gradient conflicts with the gradient of the KL to zero-shot CLIP's logits, its component along the KL direction
    is removed (scaled by ``prograd_lambda``). ``template`` is the teacher's template (ProGrad's per-dataset ones,
    e.g. ``"a type of pet, a photo of a {}."``). Trainable parameters: ``n_ctx · width`` (8,192 at ViT-B/16 size).

    With ``ctx_init`` the first ``n_ctx − k`` context vectors start at zero and the last ``k`` at the word embeddings
    of the ``k``-token phrase (ProGrad's init, from its template with ``" {}."`` stripped).

    Example:
        ```python
        config = peft_dor.ProGradConfig(class_names=["banded", "dotted"], template="a texture of {}.")
        model = get_peft_model(clip, config)
        trainer = peft_dor.DORTrainer(model=model, args=args, train_dataset=train, data_collator=collate)
        ```
    """

    ctx_init: str | None = field(
        default=None,
        metadata={
            "help": "Phrase (or template ending in ' {}.') whose word embeddings initialise the LAST context vectors; "
            "the ones before it start at zero. None: random N(0, ctx_std) init."
        },
    )
    prograd_lambda: float = field(
        default=1.0,
        metadata={
            "help": "λ of the projection: 1.0 removes the conflicting component (ProGrad uses 0.8 for 8- and "
            "16-shot Flowers, DTD and EuroSAT)."
        },
    )
    kl_temperature: float = field(
        default=1.0, metadata={"help": "Temperature T of the distillation term whose gradient guides the projection."}
    )

    default_n_ctx = 16
    default_target_modules = ("text_model.embeddings",)
    #: the repository's RN50 recipe (ViT-B/16 base-to-new settings are not public); epochs follow CoOp's schedule
    #: by shots: 50 (1 shot), 100 (2-4 shots), 200 (8-16 shots)
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe(
            "sgd", 0.002, 32, 200, note="50 epochs at 1 shot, 100 at 2-4 shots (CoOp's schedule)"
        )
    }

    def __post_init__(self) -> None:
        if isinstance(self.ctx_init, str) and "{}" in self.ctx_init:
            if not self.ctx_init.rstrip().endswith("{}."):
                raise ValueError(
                    f"`ctx_init` may be a template only when it ends with ' {{}}.' (ProGrad strips it); got "
                    f"{self.ctx_init!r}. Pass the phrase itself instead."
                )
            self.ctx_init = self.ctx_init.rstrip()[: -len("{}.")].rstrip()
        if self.n_ctx is None:
            self.n_ctx = self.default_n_ctx
        super().__post_init__()
        check_number(self.prograd_lambda, "prograd_lambda", hint=" (ProGrad: 1.0)")
        check_number(self.kl_temperature, "kl_temperature", strict=True, hint=" (ProGrad: 1.0)")
        self.peft_type = DorPeftType.PROGRAD
