from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...prompting import ContextPromptConfig, PromptLayout, TrainingRecipe, check_number, check_template
from ...registry import DorPeftType


@dataclass
class TCPConfig(ContextPromptConfig):
    """Configuration of TCP (Yao et al., CVPR 2024): textual-knowledge class tokens injected deep in the text tower.

    Frozen CLIP's feature ``t_i`` of ``template`` for each class (TCP's "ori" templates, e.g.
    ``"a photo of an aircraft {}."``) goes through the textual knowledge embedding
    ``TKE = Linear(D → D/4) → QuickGELU → Linear(D/4 → n_ctx·width)``; its ``n_ctx`` per-class tokens replace the
    context slots at the input of text layer ``class_token_layer`` (8 of ViT-B/16's 0..11), without position
    embeddings. Layers before it see the shared, randomly initialised context. Training adds
    ``knowledge_weight · (1 − mean_i cos(w_i, t_i))`` as ``output.losses["tcp"]``. Trainable parameters at ViT-B/16
    size: ctx 2,048 + TKE 329,856 = 331,904.

    New classes and DOR outliers get their tokens from TKE of their own frozen feature, exactly like training
    classes (the natural choice; the official DOR code does not cover TCP).

    Example:
        ```python
        pets = dict(template="a photo of a {}, a type of pet.", prompt_template="X X X X {}, a type of pet.")
        model = get_peft_model(clip, peft_dor.TCPConfig(class_names=["abyssinian", "beagle"], **pets))
        ```
    """

    prompt_template: str | None = field(
        default=None,
        metadata={
            "help": "Learnable-prompt layout with '{}' for the class name; the first n_ctx tokens before '{}' are the "
            "learned slots, the rest stays fixed (TCP's per-dataset layouts, e.g. 'X X X X {}, a type of pet.' or "
            "'a photo of a person doing {}.'). None: n_ctx placeholders, the class name and '.'."
        },
    )
    class_token_layer: int = field(
        default=8,
        metadata={"help": "Text layer at whose input the class-aware tokens replace the context (TCP: 8, 0-based)."},
    )
    knowledge_hidden_dim: int | None = field(
        default=None,
        metadata={"help": "Hidden width of TKE; None: projection_dim // 4 (128 for ViT-B/16), as in TCP."},
    )
    knowledge_weight: float = field(
        default=8.0,
        metadata={
            "help": "Weight of 1 - mean cos to the frozen class features; TCP hard-codes 8.0 (the scripts' W option "
            "is overwritten and has no effect)."
        },
    )

    default_n_ctx = 4
    #: TCP's real settings: the config file says "ep100" but sets 50 epochs; Adam (coupled L2, not AdamW) with eps
    #: 1e-3, patched for fp16; ImageNet and SUN397 were evaluated from epoch 25 (evidently trained for 25)
    training_defaults: ClassVar[dict[str, TrainingRecipe]] = {
        "original": TrainingRecipe("adam", 0.002, 32, 50, adam_epsilon=1e-3, note="25 epochs for ImageNet and SUN397")
    }

    def __post_init__(self) -> None:
        if self.target_modules is None:
            self.target_modules = ["text_model.embeddings", f"text_model.encoder.layers.{self.class_token_layer}"]
        super().__post_init__()
        if not isinstance(self.class_token_layer, int) or self.class_token_layer < 1:
            raise ValueError(
                "`class_token_layer` must be an integer >= 1 (the class tokens replace the context at that layer's "
                f"input; TCP uses 8); got {self.class_token_layer!r}."
            )
        if self.knowledge_hidden_dim is not None and (
            not isinstance(self.knowledge_hidden_dim, int) or self.knowledge_hidden_dim < 1
        ):
            raise ValueError(
                f"`knowledge_hidden_dim` must be a positive integer (or None for projection_dim // 4); "
                f"got {self.knowledge_hidden_dim!r}."
            )
        check_number(self.knowledge_weight, "knowledge_weight", hint=" (TCP: 8.0)")
        if self.prompt_template is not None:
            check_template(self.prompt_template, "prompt_template")
            if self.ctx_init:
                raise ValueError(
                    "Set either `prompt_template` (its words before '{}' are the slots, randomly initialised as in "
                    "TCP) or `ctx_init`, not both."
                )
            if self.class_token_position != "end":
                raise ValueError(
                    "`prompt_template` fixes where the class name goes; leave class_token_position='end'."
                )
        self.peft_type = DorPeftType.TCP

    def prompt_layout(self) -> PromptLayout:
        if self.prompt_template is None:
            return super().prompt_layout()
        prefix, suffix = self.prompt_template.split("{}")
        return PromptLayout(prefix=prefix.strip(), n_ctx=self.n_ctx, suffix=suffix)
