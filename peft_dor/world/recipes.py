"""The two pre-training recipes of the world models: the model configs and the contrastive losses.

Only these differ between the world CLIP (``CLIPModel``, a symmetric multi-positive softmax loss, the logit scale held
fixed) and the world SigLIP (``SiglipModel``, SigLIP's pairwise sigmoid loss, a learned scale and bias); the world,
data, steps and schedule are shared (:mod:`peft_dor.world.pretrain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .pretrain import PretrainConfig


def _towers(tokenizer, config: PretrainConfig, image_size: int, text_length: int) -> tuple[dict, dict]:
    """Text and vision tower settings shared by both backbones: ``hidden_size`` wide, ``num_layers`` deep."""
    tower = {
        "hidden_size": config.hidden_size,
        "intermediate_size": 4 * config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
    }
    text = dict(tower, vocab_size=len(tokenizer), max_position_embeddings=text_length)
    text.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id
    )
    return text, dict(tower, image_size=image_size, patch_size=config.patch_size)


def world_clip_config(tokenizer, config: PretrainConfig, image_size: int = 32):
    """The ``CLIPConfig`` of the world CLIP: two small towers of ``hidden_size`` with ``num_layers`` layers each."""
    from transformers import CLIPConfig

    text, vision = _towers(tokenizer, config, image_size, RECIPES["clip"].text_length)
    return CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=config.projection_dim,
        logit_scale_init_value=math.log(config.train_logit_scale),
    )


def world_siglip_config(tokenizer, config: PretrainConfig, image_size: int = 32):
    """The ``SiglipConfig`` of the world SigLIP: the world CLIP's tower sizes, texts of a fixed length."""
    from transformers import SiglipConfig

    text, vision = _towers(tokenizer, config, image_size, RECIPES["siglip"].text_length)
    return SiglipConfig(text_config=dict(text, projection_size=config.projection_dim), vision_config=vision)


def multi_positive_loss(logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss with every true caption a positive: CE against the row-normalised matches."""
    targets = matches.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    text_to_image = -(targets.t() / targets.t().sum(1, keepdim=True) * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def sigmoid_loss(logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise logistic loss: every (image, caption) pair is a binary match, summed over captions and
    averaged over images (the SigLIP paper's normalisation); every true caption is a positive."""
    signs = matches.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum(1).mean()


@dataclass(frozen=True)
class Recipe:
    """What differs between the world CLIP and the world SigLIP (everything else is shared).

    Attributes:
        model_class: the transformers class trained.
        build_config: ``(tokenizer, PretrainConfig, image_size) -> config`` of that class.
        loss: ``(logits, matches) -> loss``, logits ``(images, captions)``.
        text_length: the text tower's positions (``max_position_embeddings``); SigLIP pads every text to it.
        learn_scale: whether the logit scale (and bias) train; otherwise the scale is held at ``train_logit_scale``.
        init_scale_bias: the initial logit scale and bias of a learned pair, or None.
    """

    model_class: str
    build_config: object
    loss: object
    text_length: int
    learn_scale: bool
    init_scale_bias: tuple[float, float] | None = None


#: The longest text of the world: a caption is at most 12 tokens and the demo's CoOp prompt 20 ([BOS], 16 context
#: tokens, the name, ".", [EOS]); SigLIP's fixed length is that rounded up to a multiple of 8.
SIGLIP_TEXT_LENGTH = 24
RECIPES: dict[str, Recipe] = {
    "clip": Recipe("CLIPModel", world_clip_config, multi_positive_loss, 77, learn_scale=False),
    "siglip": Recipe(
        "SiglipModel", world_siglip_config, sigmoid_loss, SIGLIP_TEXT_LENGTH, True, (math.log(10.0), -10.0)
    ),
}
