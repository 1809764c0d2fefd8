"""What a vision-language backbone's text path is like, as data chosen from the model, not branches in the code.

The hand-driven text tower (``peft_dor.prompting.text``), the prompt tokenizer's padding policy and any speed-up
that relies on causal attention read these rules instead of asking which model they run on. CLIP's rules:

* attention is causal, so the tower is given an explicit causal mask and the rows after a prompt's EOS never reach
  its pooled row: prompts may be padded to the longest prompt of a pass (exact), and positions before the first
  token where prompts differ have the same hidden states in every prompt;
* the text feature is the final-LayerNorm output at the EOS token, through ``text_projection``.

A backbone is registered by its config's ``model_type``; :func:`text_rules` looks it up.
"""

from __future__ import annotations

from dataclasses import dataclass

POOLING_RULES = ("eos",)


@dataclass(frozen=True)
class TextRules:
    """How prompts run through a backbone's text tower.

    Attributes:
        causal: whether text attention is causal (each position attends to itself and earlier ones only).
        pooling: which row becomes the text feature: ``"eos"`` (the EOS token's row, CLIP).
        fixed_length: pad every prompt to this many tokens; None pads to the longest prompt of the pass, which is
            exact only with causal attention and EOS pooling.
    """

    causal: bool = True
    pooling: str = "eos"
    fixed_length: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_RULES:
            raise ValueError(f"`pooling` must be one of {POOLING_RULES}; got {self.pooling!r}.")
        if self.fixed_length is None and not (self.causal and self.pooling == "eos"):
            raise ValueError(
                "Padding to the longest prompt is exact only with causal attention and EOS pooling; set `fixed_length` "
                "to the length the backbone was trained with."
            )


CLIP_TEXT_RULES = TextRules(causal=True, pooling="eos", fixed_length=None)

#: config ``model_type`` -> the rules of that backbone's text path
TEXT_RULES: dict[str, TextRules] = {"clip": CLIP_TEXT_RULES}


def text_rules(model) -> TextRules:
    """The :class:`TextRules` of ``model`` (a vision-language model such as ``CLIPModel``), from its config's
    ``model_type``.

    Raises:
        TypeError: when the backbone has no registered rules.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    rules = TEXT_RULES.get(model_type)
    if rules is None:
        raise TypeError(
            f"peft-dor has no text rules for backbone model_type={model_type!r} ({type(model).__name__}); supported: "
            f"{sorted(TEXT_RULES)}. Load a supported model, e.g. CLIPModel.from_pretrained('openai/clip-vit-base-patch16')."
        )
    return rules
