"""What a vision-language backbone is like, as data chosen from the model, not branches in the code.

The hand-driven text tower (``peft_dor.prompting.text``), the prompt tokenizer's padding policy, the classifier's
logits and any speed-up that relies on causal attention read these records instead of asking which model they run on.

CLIP (``CLIPModel``):

* text attention is causal, so the tower is given an explicit causal mask and the rows after a prompt's EOS never
  reach its pooled row: prompts may be padded to the longest prompt of a pass (exact), and positions before the first
  token where prompts differ have the same hidden states in every prompt;
* the text feature is the final-LayerNorm output at the EOS token, through ``text_projection``;
* logits are ``logit_scale.exp() * cos``; the joint width is ``config.projection_dim``.

SigLIP (``SiglipModel``, transformers 5.x ``modeling_siglip.py``):

* text attention is bidirectional and pre-training padded every text to the tower's 64 positions with no attention
  mask (the pads attend and are attended to), so prompts are padded to ``max_position_embeddings`` and no mask is
  passed: padding to the longest prompt would change every feature;
* the text feature is the final-LayerNorm output at the *last position* (a pad token for short prompts), through
  ``text_model.head``;
* logits are ``logit_scale.exp() * cos + logit_bias``; the joint width is ``text_config.projection_size``.

A backbone is registered by its config's ``model_type``; :func:`backbone` and :func:`text_rules` look it up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

POOLING_RULES = ("eos", "last")


@dataclass(frozen=True)
class TextRules:
    """How prompts run through a backbone's text tower.

    Attributes:
        causal: whether text attention is causal (each position attends to itself and earlier ones only).
        pooling: which row becomes the text feature: ``"eos"`` (the EOS token's row, CLIP) or ``"last"`` (the last
            position of the padded sequence, SigLIP).
        fixed_length: pad every prompt to this many tokens; None pads to the longest prompt of the pass, which is
            exact only with causal attention and EOS pooling.
        projection: the module (dotted path from the model) that maps the pooled row to the joint space.
    """

    causal: bool = True
    pooling: str = "eos"
    fixed_length: int | None = None
    projection: str = "text_projection"

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_RULES:
            raise ValueError(f"`pooling` must be one of {POOLING_RULES}; got {self.pooling!r}.")
        if self.fixed_length is None and not (self.causal and self.pooling == "eos"):
            raise ValueError(
                "Padding to the longest prompt is exact only with causal attention and EOS pooling; set `fixed_length` "
                "to the length the backbone was trained with."
            )


@dataclass(frozen=True)
class Backbone:
    """The facts about one vision-language backbone that the package reads.

    Attributes:
        name: display name (model cards, docs), e.g. ``"SigLIP"``.
        model_class: the transformers class that loads it, e.g. ``"SiglipModel"``.
        checkpoint: a Hub id of a base model, for examples and error messages.
        text: the text path's :class:`TextRules`; a ``fixed_length`` here is replaced by the loaded model's
            ``text_config.max_position_embeddings`` (:func:`text_rules`).
        logit_bias: the model's learned logit bias parameter (added to every logit), or None.
        embed_dim: the config attribute (dotted) holding the width of the joint image-text space.
        vision_pooling: how the vision tower pools: ``"cls"`` (the class token, index 0) or ``"attention"`` (a
            multi-head attention probe over every token, SigLIP's ``vision_model.head``).
    """

    name: str
    model_class: str
    checkpoint: str
    text: TextRules
    logit_bias: str | None = None
    embed_dim: str = "projection_dim"
    vision_pooling: str = "cls"


CLIP_TEXT_RULES = TextRules(causal=True, pooling="eos", fixed_length=None)
SIGLIP_TEXT_RULES = TextRules(causal=False, pooling="last", fixed_length=64, projection="text_model.head")

CLIP = Backbone("CLIP", "CLIPModel", "openai/clip-vit-base-patch16", CLIP_TEXT_RULES)
SIGLIP = Backbone(
    "SigLIP",
    "SiglipModel",
    "google/siglip-base-patch16-224",
    SIGLIP_TEXT_RULES,
    logit_bias="logit_bias",
    embed_dim="text_config.projection_size",
    vision_pooling="attention",
)

#: config ``model_type`` -> the backbone record
BACKBONES: dict[str, Backbone] = {"clip": CLIP, "siglip": SIGLIP}
#: config ``model_type`` -> the rules of that backbone's text path (as registered)
TEXT_RULES: dict[str, TextRules] = {key: record.text for key, record in BACKBONES.items()}


def _model_type(model_or_config) -> str | None:
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "model_type", None)


def backbone(model_or_config) -> Backbone:
    """The :class:`Backbone` of a model (``CLIPModel``, ``SiglipModel``) or its config, from ``model_type``.

    Raises:
        TypeError: when the backbone is not supported, naming the supported classes.
    """
    model_type = _model_type(model_or_config)
    record = BACKBONES.get(model_type)
    if record is None:
        supported = ", ".join(f"{r.model_class} ({key!r})" for key, r in BACKBONES.items())
        raise TypeError(
            f"peft-dor has no rules for backbone model_type={model_type!r} ({type(model_or_config).__name__}); "
            f"supported: {sorted(BACKBONES)} [{supported}]. Load a supported model, e.g. "
            f"CLIPModel.from_pretrained('{CLIP.checkpoint}') or SiglipModel.from_pretrained('{SIGLIP.checkpoint}')."
        )
    return record


def text_rules(model) -> TextRules:
    """The :class:`TextRules` of ``model`` (a vision-language model such as ``CLIPModel``), from its config's
    ``model_type``; a fixed length is the model's own ``text_config.max_position_embeddings``.

    Raises:
        TypeError: when the backbone has no registered rules.
    """
    rules = backbone(model).text
    if rules.fixed_length is not None:
        length = getattr(getattr(getattr(model, "config", None), "text_config", None), "max_position_embeddings", None)
        if length is not None and int(length) != rules.fixed_length:
            rules = dataclasses.replace(rules, fixed_length=int(length))
    return rules


def _attribute(root, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def embed_dim(model_or_config) -> int:
    """The width of the joint image-text space (what ``get_text_features`` / ``get_image_features`` return)."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(_attribute(config, backbone(config).embed_dim))


def text_projection(model) -> nn.Module:
    """The module that maps the pooled text row to the joint space (``text_projection``, ``text_model.head``)."""
    return _attribute(model, text_rules(model).projection)


def logit_bias(model):
    """The model's logit bias parameter, or None for backbones without one (CLIP)."""
    name = backbone(model).logit_bias
    return None if name is None else _attribute(model, name)
