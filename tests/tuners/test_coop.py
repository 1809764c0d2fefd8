"""CoOp: the reference method. Zero-shot equivalence, PEFT round trips, gradients, validation."""

from __future__ import annotations

import json
import os

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoTokenizer, CLIPModel

from peft_dor import CoOpConfig, DorPeftType

# (class_token_position, the hand-crafted template with the same token layout as ctx_init="a photo of a")
LAYOUTS = [("end", "a photo of a {}."), ("front", "{} a photo of a."), ("middle", "a photo {} of a.")]


@torch.no_grad()
def zero_shot_logits(clip, tokenizer, pixel_values, texts):
    """Zero-shot CLIP with plain transformers: the independent reference."""
    batch = tokenizer(texts, padding="max_length", max_length=77, return_tensors="pt")
    text = clip.get_text_features(input_ids=batch["input_ids"]).pooler_output
    image = clip.get_image_features(pixel_values=pixel_values).pooler_output
    text = text / text.norm(dim=-1, keepdim=True)
    image = image / image.norm(dim=-1, keepdim=True)
    return clip.logit_scale.exp() * image @ text.t()


def coop(clip, class_names, **kwargs):
    return get_peft_model(clip, CoOpConfig(class_names=class_names, **kwargs))


@pytest.mark.parametrize("class_specific", [False, True])
@pytest.mark.parametrize(("position", "template"), LAYOUTS)
def test_initial_logits_equal_zero_shot_clip(
    tiny_clip_path, class_names, pixel_values, position, template, class_specific
):
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    reference_clip = CLIPModel.from_pretrained(tiny_clip_path).eval()
    expected = zero_shot_logits(reference_clip, tokenizer, pixel_values, [template.format(c) for c in class_names])
    model = coop(
        CLIPModel.from_pretrained(tiny_clip_path),
        class_names,
        ctx_init="a photo of a",
        class_token_position=position,
        class_specific=class_specific,
    ).eval()
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_disable_adapter_gives_the_base_model(tiny_clip_path, tiny_clip, class_names, pixel_values):
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    expected = zero_shot_logits(tiny_clip, tokenizer, pixel_values, [f"a photo of a {c}." for c in class_names])
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4).eval()
    with torch.no_grad():
        prompted = model(pixel_values=pixel_values).logits
        with model.disable_adapter():
            disabled = model(pixel_values=pixel_values).logits
        again = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(disabled, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(prompted, expected, atol=1e-3)
    torch.testing.assert_close(again, prompted, atol=0, rtol=0)


def test_zero_shot_text_features_use_the_base_model(tiny_clip_path, tiny_clip, class_names):
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4)
    features = model.zero_shot_text_features(class_names, "a photo of a {}.")
    batch = tokenizer([f"a photo of a {c}." for c in class_names], padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = tiny_clip.get_text_features(input_ids=batch["input_ids"]).pooler_output
    torch.testing.assert_close(features, reference / reference.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)
    assert model.zero_shot_text_features(class_names, "a photo of a {}.") is features  # cached


def test_save_and_reload_into_a_fresh_base_model(tiny_clip_path, class_names, pixel_values, tmp_path):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4)
    with torch.no_grad():
        model.get_base_model().clip.text_model.embeddings.coop_ctx["default"].normal_()
    model.eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits
    model.save_pretrained(tmp_path)

    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert list(tensors) == ["base_model.model.clip.text_model.embeddings.coop_ctx"]
    assert tensors["base_model.model.clip.text_model.embeddings.coop_ctx"].shape == (4, 32)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "DOR_COOP" and saved["class_names"] == class_names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in os.listdir(tmp_path))

    config = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(config, CoOpConfig) and config.peft_type == DorPeftType.COOP
    reloaded = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, expected, atol=0, rtol=0)
    assert not any(p.requires_grad for p in reloaded.parameters())


def test_two_adapters_can_be_added_switched_and_deleted(tiny_clip_path, class_names, pixel_values):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4).eval()
    model.add_adapter("short", CoOpConfig(class_names=class_names, n_ctx=2))
    with torch.no_grad():
        first = model(pixel_values=pixel_values).logits
        model.set_adapter("short")
        second = model(pixel_values=pixel_values).logits
    assert not torch.allclose(first, second)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"base_model.model.clip.text_model.embeddings.coop_ctx.short"}
    model.set_adapter("default")
    model.delete_adapter("short")
    assert list(model.peft_config) == ["default"]
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).logits, first, atol=0, rtol=0)


def test_unload_returns_the_plain_clip_model(tiny_clip_path, class_names):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4)
    clip = model.unload()
    assert type(clip).__name__ == "CLIPModel"
    assert type(clip.text_model.embeddings).__name__ == "CLIPTextEmbeddings"
    with pytest.raises(ValueError, match="cannot be merged"):
        coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4).merge_and_unload()


def test_only_the_context_trains_and_the_base_model_is_untouched(tiny_clip_path, class_names, pixel_values):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "coop_ctx" not in n}
    ctx_before = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"].detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    model.train()
    loss = model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 3])).loss
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {"base_model.model.clip.text_model.embeddings.coop_ctx.default"}
    optimizer.step()
    for name, param in model.named_parameters():
        if name in before:
            assert torch.equal(param, before[name]), name
    assert not torch.equal(model.get_base_model().clip.text_model.embeddings.coop_ctx["default"], ctx_before)


def test_trainable_parameters_are_n_ctx_times_width(tiny_clip_path, class_names):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=16)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == 16 * 32
    csc = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4, class_specific=True)
    assert csc.get_nb_trainable_parameters()[0] == len(class_names) * 4 * 32


@pytest.mark.parametrize(("n_ctx", "expected"), [(4, 2048), (16, 8192)])
def test_parameter_count_at_vit_b16_text_width(tiny_clip_path, n_ctx, expected):
    from peft_dor.testing import build_tiny_tokenizer, tiny_clip_config

    tokenizer = build_tiny_tokenizer()
    config = tiny_clip_config(
        len(tokenizer),
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        text_config={"hidden_size": 512, "num_attention_heads": 8, "num_hidden_layers": 1, "intermediate_size": 64},
    )
    clip = CLIPModel(config)
    model = coop(clip, ["cat", "dog"], n_ctx=n_ctx, tokenizer_name_or_path=tiny_clip_path)
    assert model.get_nb_trainable_parameters()[0] == expected


def test_set_class_names_on_the_peft_model(tiny_clip_path, class_names, pixel_values):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4).eval()
    model.set_class_names(["tree", "rose"])
    with torch.no_grad():
        assert model(pixel_values=pixel_values).logits.shape == (4, 2)
    assert model.peft_config["default"].class_names == class_names  # the trained-on classes stay on record
    with pytest.raises(ValueError, match="duplicates"):
        model.set_class_names(["tree", "Tree"])


def test_class_specific_context_refuses_other_classes(tiny_clip_path, class_names):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4, class_specific=True)
    with pytest.raises(ValueError, match="class_specific=True"):
        model.set_class_names(["tree", "rose"])
    with pytest.raises(ValueError, match="class_specific=False"):
        model(pixel_values=torch.zeros(1, 3, 32, 32), extra_names=["lamp"])


def test_extra_names_come_from_the_same_forward(tiny_clip_path, class_names, pixel_values):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, n_ctx=4).train()
    out = model(pixel_values=pixel_values, extra_names=["lamp", "chair"])
    assert out.extra_text_embeds.shape == (2, 24) and out.text_embeds.shape == (5, 24)
    with torch.no_grad():
        reference = model.encode_text(["lamp", "chair"])
    torch.testing.assert_close(out.extra_text_embeds.detach(), reference, atol=1e-6, rtol=0)
    assert out.extra_text_embeds.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_names": None}, "class_names"),
        ({"class_names": []}, "class_names"),
        ({"class_names": "cat"}, "class_names"),
        ({"class_names": ["cat", "Cat "]}, "duplicates"),
        ({"class_names": ["cat", ""]}, "non-empty"),
        ({"class_names": ["cat"], "template": "a photo of a cat."}, "template"),
        ({"class_names": ["cat"], "n_ctx": 0}, "n_ctx"),
        ({"class_names": ["cat"], "class_token_position": "start"}, "class_token_position"),
        ({"class_names": ["cat"], "ctx_std": 0.0}, "ctx_std"),
    ],
)
def test_config_validation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoOpConfig(**kwargs)


def test_prompt_longer_than_the_text_tower_fails_at_construction(tiny_clip_path):
    long_name = " ".join(["cat"] * 80)
    with pytest.raises(ValueError, match="at most 77"):
        coop(CLIPModel.from_pretrained(tiny_clip_path), ["dog", long_name], n_ctx=4)


def test_ctx_init_longer_than_n_ctx_is_allowed_and_shorter_is_not(tiny_clip_path, class_names):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, ctx_init="a photo of a", n_ctx=2)
    assert model.get_nb_trainable_parameters()[0] == 2 * 32
    with pytest.raises(ValueError, match="n_ctx=6"):
        coop(CLIPModel.from_pretrained(tiny_clip_path), class_names, ctx_init="a photo of a", n_ctx=6)


def test_non_clip_base_model_is_rejected(class_names):
    with pytest.raises(TypeError, match="CLIPModel"):
        get_peft_model(torch.nn.Linear(2, 2), CoOpConfig(class_names=class_names))


def test_bf16_base_model_keeps_fp32_prompts(tiny_clip_path, class_names, pixel_values):
    model = coop(CLIPModel.from_pretrained(tiny_clip_path, dtype=torch.bfloat16), class_names, n_ctx=4)
    ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
    assert ctx.dtype == torch.float32
    out = model(pixel_values=pixel_values.bfloat16(), labels=torch.tensor([0, 1, 2, 3]))
    out.loss.backward()
    assert ctx.grad is not None and ctx.grad.dtype == torch.float32
