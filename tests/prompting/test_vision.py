"""Vision prompting machinery: where appended prompts sit, deep replacement, CLS pooling, depth checks, precision.

The reference for every numeric check is CLIP's vision tower driven by hand with transformers' own modules (the
"manual loop" of METHODS.md §4.3), never the prompt layers under test.
"""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import CLIPModel

from peft_dor import IVLPConfig, VPTConfig
from peft_dor.prompting.vision import prompt_targets
from peft_dor.testing import build_tiny_clip

N_TOKENS = 17  # CLS + (32 px / patch 8)^2 patches in the tiny CLIP


@pytest.fixture(scope="module")
def three_layer_clip_path(tmp_path_factory) -> str:
    """A tiny CLIP with 3 vision layers, so that depth 2 leaves one layer where the prompt outputs propagate."""
    return build_tiny_clip(tmp_path_factory.mktemp("clip3"), seed=1, vision_config={"num_hidden_layers": 3})


def vpt(path: str, class_names, **kwargs):
    torch.manual_seed(0)
    return get_peft_model(CLIPModel.from_pretrained(path).eval(), VPTConfig(class_names=class_names, **kwargs))


def prompt_tensors(model, name: str = "vpt_prompts") -> dict[str, torch.Tensor]:
    """Layer name ('embeddings' or the encoder index) -> that layer's prompt tensor."""
    tensors = {}
    for module_name, module in model.named_modules():
        if hasattr(module, name):
            key = "embeddings" if module_name.endswith("embeddings") else int(module_name.rsplit(".", 1)[1])
            tensors[key] = getattr(module, name)["default"]
    return tensors


@torch.no_grad()
def manual_image_features(clip, pixel_values, prompts: dict) -> torch.Tensor:
    """CLIP's vision tower by hand: embeddings, append V_0, pre-LN, layers with V_i replacing the tail, CLS pooling."""
    vision = clip.vision_model
    base = lambda module: getattr(module, "base_layer", module)  # noqa: E731 - the wrapped CLIP module itself
    hidden = base(vision.embeddings)(pixel_values)
    n = prompts["embeddings"].shape[0]
    hidden = torch.cat([hidden, prompts["embeddings"].expand(hidden.shape[0], -1, -1)], dim=1)
    hidden = vision.pre_layrnorm(hidden)
    for i, layer in enumerate(vision.encoder.layers):
        if i in prompts:
            hidden = torch.cat([hidden[:, :-n], prompts[i].expand(hidden.shape[0], -1, -1)], dim=1)
        hidden = base(layer)(hidden, None)
    pooled = vision.post_layernorm(hidden[:, 0])
    features = clip.visual_projection(pooled)
    return features / features.norm(dim=-1, keepdim=True)


def test_prompt_targets_cover_the_embeddings_and_layers_1_to_depth_minus_1():
    assert prompt_targets({"vision": 1}) == ["vision_model.embeddings"]
    assert prompt_targets({"text": 3, "vision": 0}) == [
        "text_model.embeddings",
        "text_model.encoder.layers.1",
        "text_model.encoder.layers.2",
    ]


def test_prompts_are_appended_after_position_embeddings_and_before_pre_layernorm(
    tiny_clip_path, class_names, pixel_values
):
    model = vpt(tiny_clip_path, class_names, vision_tokens=3)
    clip = model.get_base_model().clip
    seen = []
    clip.vision_model.pre_layrnorm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        model(pixel_values=pixel_values)
        reference = clip.vision_model.embeddings.base_layer(pixel_values)  # patches + CLS + position embeddings
    (hidden,) = seen
    assert hidden.shape == (4, N_TOKENS + 3, 32)
    torch.testing.assert_close(hidden[:, :N_TOKENS], reference, atol=0, rtol=0)
    prompts = prompt_tensors(model)["embeddings"]
    torch.testing.assert_close(hidden[:, N_TOKENS:], prompts.expand(4, -1, -1), atol=0, rtol=0)


def test_deep_prompts_replace_the_tail_up_to_depth_and_then_propagate(
    three_layer_clip_path, class_names, pixel_values
):
    model = vpt(three_layer_clip_path, class_names, vision_tokens=2, depth=2)
    clip = model.get_base_model().clip
    layers = clip.vision_model.encoder.layers
    inputs, outputs = {}, {}

    def record(index):
        def hook(module, args, out):
            inputs[index], outputs[index] = args[0], out

        return hook

    for i, layer in enumerate(layers):
        getattr(layer, "base_layer", layer).register_forward_hook(record(i))
    with torch.no_grad():
        model(pixel_values=pixel_values)
    prompts = prompt_tensors(model)
    assert sorted(k for k in prompts if k != "embeddings") == [1]
    assert all(inputs[i].shape == (4, N_TOKENS + 2, 32) for i in range(3))  # grows once, by exactly n_v
    torch.testing.assert_close(inputs[1][:, -2:], prompts[1].expand(4, -1, -1), atol=0, rtol=0)  # replaced
    torch.testing.assert_close(inputs[1][:, :-2], outputs[0][:, :-2], atol=0, rtol=0)  # the rest untouched
    torch.testing.assert_close(inputs[2], outputs[1], atol=0, rtol=0)  # from layer J on, the outputs propagate


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_image_features_equal_the_hand_driven_tower_with_cls_pooling(
    three_layer_clip_path, class_names, pixel_values, depth
):
    model = vpt(three_layer_clip_path, class_names, vision_tokens=4, depth=depth)
    with torch.no_grad():
        for tensor in prompt_tensors(model).values():
            tensor.normal_()
        features = model(pixel_values=pixel_values).image_embeds
    expected = manual_image_features(model.get_base_model().clip, pixel_values, prompt_tensors(model))
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)


def test_prompts_off_give_plain_transformers_image_features(tiny_clip_path, class_names, pixel_values):
    model = vpt(tiny_clip_path, class_names, deep=True)
    reference_clip = CLIPModel.from_pretrained(tiny_clip_path).eval()
    with torch.no_grad():
        expected = reference_clip.get_image_features(pixel_values=pixel_values).pooler_output
        expected = expected / expected.norm(dim=-1, keepdim=True)
        prompted = model(pixel_values=pixel_values).image_embeds
        with model.disable_adapter():
            disabled = model(pixel_values=pixel_values).image_embeds
        zero_shot = model.get_base_model().zero_shot_image_features(pixel_values)
    torch.testing.assert_close(disabled, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(zero_shot, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(prompted, expected, atol=1e-4)


def test_extra_images_go_through_the_prompts(tiny_clip_path, class_names, pixel_values):
    model = vpt(tiny_clip_path, class_names, deep=True).train()
    out = model(pixel_values=pixel_values[:2], extra_pixel_values=pixel_values[2:])
    with torch.no_grad():
        expected = model.get_base_model().encode_image(pixel_values[2:])
        zero_shot = model.get_base_model().zero_shot_image_features(pixel_values[2:])
    torch.testing.assert_close(out.extra_image_embeds.detach(), expected, atol=1e-6, rtol=0)
    assert out.extra_image_embeds.requires_grad and not torch.allclose(expected, zero_shot, atol=1e-4)


def test_interpolated_position_encoding_passes_through(tiny_clip_path, class_names):
    model = vpt(tiny_clip_path, class_names, vision_tokens=2)
    clip = model.get_base_model().clip
    seen = []
    clip.vision_model.pre_layrnorm.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        clip.get_image_features(pixel_values=torch.randn(1, 3, 48, 48), interpolate_pos_encoding=True)
    assert seen == [torch.Size([1, 1 + 36 + 2, 32])]


def test_vision_gradient_checkpointing_gives_the_same_gradients(tiny_clip_path, class_names, pixel_values):
    labels = torch.tensor([0, 1, 2, 3])
    grads = []
    for checkpointing in (False, True):
        model = vpt(tiny_clip_path, class_names, deep=True).train()
        if checkpointing:
            clip = model.get_base_model().clip
            clip.activation_checkpointing_enable()
            assert all(layer.base_layer.gradient_checkpointing for layer in clip.vision_model.encoder.layers[1:])
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        grads.append([t.grad.clone() for t in prompt_tensors(model).values()])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, plain, atol=1e-6, rtol=0)


def test_bf16_base_model_keeps_fp32_prompts(tiny_clip_path, class_names, pixel_values):
    clip = CLIPModel.from_pretrained(tiny_clip_path, dtype=torch.bfloat16)
    model = get_peft_model(clip, VPTConfig(class_names=class_names, deep=True))
    prompts = prompt_tensors(model)
    assert all(t.dtype == torch.float32 for t in prompts.values())
    out = model(pixel_values=pixel_values.bfloat16(), labels=torch.tensor([0, 1, 2, 3]))
    out.loss.backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in prompts.values())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"depth": 3}, "`depth`=3 but the vision tower has only 2 layers"),
        ({"deep": True, "depth": 1}, "deep"),
        ({"vision_tokens": 0}, "vision_tokens"),
        ({"depth": 0}, "depth"),
        ({"ctx_std": 0.0}, "ctx_std"),
    ],
)
def test_vpt_config_errors_name_the_field(tiny_clip_path, class_names, config, message):
    with pytest.raises(ValueError, match=message):
        vpt(tiny_clip_path, class_names, **config)


def test_depth_none_with_deep_means_every_layer(tiny_clip_path, class_names):
    model = vpt(tiny_clip_path, class_names, vision_tokens=2, deep=True)
    config = model.peft_config["default"]
    assert config.depth == 2 and config.deep
    assert sorted(config.target_modules) == ["vision_model.embeddings", "vision_model.encoder.layers.1"]
    assert VPTConfig(class_names=class_names, depth=4).deep  # a depth alone asks for deep prompts


def test_ivlp_depths_are_checked_per_tower(tiny_clip_path, class_names):
    with pytest.raises(ValueError, match="`text_depth`=5 but the text tower has only 2 layers"):
        get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), IVLPConfig(class_names=class_names, text_depth=5))
    with pytest.raises(ValueError, match="vision_depth"):
        IVLPConfig(class_names=class_names, vision_depth=0)


def test_image_embeds_are_refused_when_the_vision_tower_is_prompted(tiny_clip_path, class_names):
    model = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), VPTConfig(class_names=class_names))
    with pytest.raises(ValueError, match="pixel_values"):
        model(image_embeds=torch.randn(2, 24))
    with model.disable_adapter(), torch.no_grad():  # the frozen base model may use cached features
        assert model(image_embeds=torch.randn(2, 24)).logits.shape == (2, len(class_names))
