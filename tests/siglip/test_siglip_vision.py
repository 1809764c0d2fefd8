"""Visual prompts on SigLIP: they enter after the patch embeddings, steer the patches through attention, and are cut
off before the attention-pooling head (SigLIP has no class token; ``docs/siglip.md`` gives the choice)."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import SiglipModel

from peft_dor import VPTConfig
from peft_dor.prompting import backbone
from peft_dor.prompting.vision import patch_token_count

from ..method_cases import CLASS_NAMES

N_PATCHES = (32 // 8) ** 2  # the tiny SigLIP: 32 px images, patch 8


def vpt(path: str, deep: bool = False):
    torch.manual_seed(0)
    config = VPTConfig(class_names=CLASS_NAMES, vision_tokens=3, deep=deep)
    return get_peft_model(SiglipModel.from_pretrained(path).eval(), config).eval()


def test_the_facts_the_vision_prompts_rely_on(tiny_siglip_path, pixel_values):
    siglip = SiglipModel.from_pretrained(tiny_siglip_path).eval()
    vision = siglip.vision_model
    assert backbone(siglip).vision_pooling == "attention"
    assert not hasattr(vision, "pre_layrnorm") and not hasattr(vision.embeddings, "class_embedding")
    assert list(inspect.signature(type(vision.embeddings).forward).parameters) == [
        "self",
        "pixel_values",
        "interpolate_pos_encoding",
    ]
    with torch.no_grad():
        assert vision.embeddings(pixel_values).shape == (4, N_PATCHES, 32)  # patches only, no class token
    assert patch_token_count(vision, pixel_values) == N_PATCHES


def head_inputs(model, pixel_values) -> list[tuple]:
    shapes = []
    # the keys of the head's attention probe: what it pools (the head's own input is cut by a hook of the same kind)
    attention = model.get_base_model().clip.vision_model.head.attention
    handle = attention.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[1].shape)))
    try:
        with torch.no_grad():
            model(pixel_values=pixel_values)
    finally:
        handle.remove()
    return shapes


def test_prompts_run_through_the_encoder_but_the_head_pools_the_patches_only(tiny_siglip_path, pixel_values):
    model = vpt(tiny_siglip_path, deep=True)
    vision = model.get_base_model().clip.vision_model
    seen = []
    handle = vision.post_layernorm.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    shapes = head_inputs(model, pixel_values)
    handle.remove()
    assert seen == [(4, N_PATCHES + 3, 32)] and shapes == [(4, N_PATCHES, 32)]
    # and no hook is left behind: the plain tower pools every token it is given
    assert not vision.head._forward_pre_hooks


def test_image_features_equal_the_tower_run_by_hand(tiny_siglip_path, pixel_values):
    model = vpt(tiny_siglip_path)
    wrapper = model.get_base_model()
    vision = wrapper.clip.vision_model
    prompts = vision.embeddings.vpt_prompts["default"]
    with torch.no_grad():
        prompts.add_(torch.randn(prompts.shape, generator=torch.Generator().manual_seed(3)))
        out = model(pixel_values=pixel_values)
        tokens = vision.embeddings.base_layer(pixel_values)
        hidden = torch.cat([tokens, prompts.expand(4, -1, -1)], dim=1)
        for layer in vision.encoder.layers:
            hidden = layer(hidden, None)
        expected = vision.head(vision.post_layernorm(hidden)[:, :N_PATCHES])
        with model.disable_adapter():
            plain = model(pixel_values=pixel_values).image_embeds
    torch.testing.assert_close(out.image_embeds, F.normalize(expected, dim=-1), atol=1e-6, rtol=0)
    assert not torch.allclose(out.image_embeds, plain, atol=1e-4)  # the prompts steer the patches
    assert head_inputs(model, pixel_values) == [(4, N_PATCHES, 32)]
