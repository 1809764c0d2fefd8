"""PromptCLIP: the eval-time text-feature cache, chunked encoding, checkpointing, precision and input checks."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import CLIPModel

from peft_dor import CoOpConfig


@pytest.fixture
def model(tiny_clip_path, class_names):
    return get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), CoOpConfig(class_names=class_names, n_ctx=4))


def count_text_passes(model):
    calls = []
    layer_norm = model.get_base_model().clip.text_model.final_layer_norm
    layer_norm.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_eval_reuses_class_features_until_a_prompt_changes(model, pixel_values):
    calls = count_text_passes(model)
    model.eval()
    with torch.no_grad():
        first = model(pixel_values=pixel_values).logits
        model(pixel_values=pixel_values[:2])
    assert len(calls) == 1
    ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
    with torch.no_grad():
        # an optimiser step, a load_state_dict: any in-place change bumps the version. (Not a constant shift: CLIP's
        # LayerNorms remove it, so the features would not change.)
        ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(1)))
        second = model(pixel_values=pixel_values).logits
    assert len(calls) == 2 and not torch.allclose(first, second)
    model.set_class_names(["tree", "rose"])
    with torch.no_grad():
        model(pixel_values=pixel_values)
    assert len(calls) == 3
    with model.disable_adapter(), torch.no_grad():
        model(pixel_values=pixel_values)
    assert len(calls) == 4


def test_training_mode_always_re_encodes(model, pixel_values):
    calls = count_text_passes(model)
    model.train()
    model(pixel_values=pixel_values)
    model(pixel_values=pixel_values)
    assert len(calls) == 2


def test_chunked_and_checkpointed_encoding_equal_the_plain_pass(model, pixel_values):
    labels = torch.tensor([0, 1, 2, 3])
    wrapper = model.get_base_model()
    ctx = wrapper.clip.text_model.embeddings.coop_ctx["default"]
    model.train()
    plain = model(pixel_values=pixel_values, labels=labels, extra_names=["lamp", "tree", "rose"])
    (plain_grad,) = torch.autograd.grad(plain.loss + plain.extra_text_embeds.sum(), ctx)
    wrapper.text_chunk_size = 2
    wrapper.text_checkpointing = True
    fast = model(pixel_values=pixel_values, labels=labels, extra_names=["lamp", "tree", "rose"])
    (fast_grad,) = torch.autograd.grad(fast.loss + fast.extra_text_embeds.sum(), ctx)
    # float32 summation order differs between chunked and whole passes: equal to 1e-5, as for every fast path
    torch.testing.assert_close(fast.logits, plain.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.extra_text_embeds, plain.extra_text_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_grad, plain_grad, atol=1e-5, rtol=1e-5)


def test_image_embeds_replace_pixels(model, pixel_values):
    model.eval()
    clip = model.get_base_model().clip
    with torch.no_grad():
        embeds = clip.get_image_features(pixel_values=pixel_values).pooler_output
        torch.testing.assert_close(
            model(image_embeds=embeds).logits, model(pixel_values=pixel_values).logits, atol=1e-6, rtol=0
        )


def test_bf16_autocast_is_close_to_fp32(model, pixel_values):
    model.eval()
    with torch.no_grad():
        fp32 = model(pixel_values=pixel_values).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(bf16.float(), fp32, atol=0.15, rtol=0.05)


def test_missing_images_and_bad_labels_are_reported(model, pixel_values):
    with pytest.raises(ValueError, match="pixel_values.*image_embeds"):
        model()
    with pytest.raises(ValueError, match=r"labels.*\[0, 5\)"):
        model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 5]))


def test_output_carries_normalised_features_and_loss(model, pixel_values):
    model.train()
    out = model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 3]))
    assert out.logits.shape == (4, 5) and out.losses == {}
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(5))
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out.loss, expected)


def test_missing_tokenizer_source_is_explained(tiny_clip_path, class_names):
    config = CLIPModel.from_pretrained(tiny_clip_path).config
    config._name_or_path = ""
    clip = CLIPModel(config)  # built from a config: nothing says where its tokenizer lives
    with pytest.raises(ValueError, match="tokenizer_name_or_path"):
        get_peft_model(clip, CoOpConfig(class_names=class_names, n_ctx=4))


def test_frozen_text_features_one_api_for_every_frozen_target(model):
    wrapper = model.get_base_model()
    names = ["lamp", "red river", "tree", "blue lake mountain", "cat"]
    calls = count_text_passes(model)
    whole = wrapper.frozen_text_features(names, "a photo of a {}.", cache=None)
    sorted_batches = wrapper.frozen_text_features(names, "a photo of a {}.", cache=None, batch_size=2)
    assert len(calls) == 1 + 3
    torch.testing.assert_close(sorted_batches, whole, atol=1e-6, rtol=0)  # length order, original row order back
    torch.testing.assert_close(wrapper.zero_shot_text_features(names, "a photo of a {}."), whole, atol=1e-6, rtol=0)
    # "list": the same tensor for the same list; "names": one row per name, a new name encoded on its own
    listed = wrapper.frozen_text_features(names, "a photo of a {}.")
    assert wrapper.frozen_text_features(names, "a photo of a {}.") is listed
    calls.clear()
    rows = wrapper.frozen_text_features(["lamp", "tree"], "a photo of a {}.", cache="names")
    wrapper.frozen_text_features(["tree", "rose"], "a photo of a {}.", cache="names")
    assert len(calls) == 3 and len(wrapper._frozen_text._rows) == 3
    torch.testing.assert_close(rows, whole[[0, 2]], atol=1e-6, rtol=0)
    # the autocast dtype is part of the key: a bf16 pass never serves a float32 caller
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = wrapper.frozen_text_features(names, "a photo of a {}.")
    assert bf16 is not listed and bf16.dtype == torch.float32
    on_cpu = wrapper.frozen_text_features(names, "a photo of a {}.", cache=None, device="cpu", normalize=False)
    assert on_cpu.device.type == "cpu" and not torch.allclose(on_cpu.norm(dim=-1), torch.ones(5))
    with pytest.raises(ValueError, match="cache"):
        wrapper.frozen_text_features(names, cache="all")


def test_underscores_in_class_names_are_spaces_in_the_prompt(tiny_clip_path):
    model = get_peft_model(
        CLIPModel.from_pretrained(tiny_clip_path), CoOpConfig(class_names=["red_house", "tree"], n_ctx=4)
    )
    wrapper = model.get_base_model()
    assert wrapper.tokenize(["red_house"]).input_ids.tolist() == wrapper.tokenize(["red house"]).input_ids.tolist()
    torch.testing.assert_close(
        wrapper.zero_shot_text_features(["red_house"]), wrapper.zero_shot_text_features(["red house"])
    )
    assert wrapper.class_names == ["red_house", "tree"]  # the names themselves are kept as given
    with pytest.raises(ValueError, match="duplicates"):
        model.set_class_names(["red_house", "red house"])


def test_phrase_init_learns_one_slot_per_word_and_keeps_the_rest_fixed(tiny_clip_path):
    from peft_dor import ProGradConfig

    phrase = "a type of pet, a photo of a"  # 8 words; "pet," is two tokens
    config = CoOpConfig(class_names=["cat", "dog"], ctx_init=phrase)
    assert config.n_ctx == 8
    model = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), config)
    wrapper = model.get_base_model()
    tokenizer = wrapper.prompt_tokenizer.tokenizer
    phrase_ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
    assert len(phrase_ids) == 9
    prompts = wrapper.tokenize(["cat"])
    expected = tokenizer(f"{phrase} cat.")["input_ids"]
    assert prompts.input_ids[0, : len(expected)].tolist() == expected  # the last "a" stays a fixed word
    assert prompts.slot_index.tolist() == [list(range(1, 9))]
    layer = wrapper.clip.text_model.embeddings
    torch.testing.assert_close(
        layer.coop_ctx["default"], layer.base_layer.token_embedding.weight[phrase_ids[:8]], atol=0, rtol=0
    )
    # ProGrad: 16 slots, the first 16 - 8 start at zero, then the phrase's first 8 tokens (its official init)
    prograd = get_peft_model(
        CLIPModel.from_pretrained(tiny_clip_path), ProGradConfig(class_names=["cat"], ctx_init=phrase + " {}.")
    )
    ctx = prograd.get_base_model().clip.text_model.embeddings.prograd_ctx["default"]
    assert ctx.shape[0] == 16 and not ctx[:8].any()
    torch.testing.assert_close(ctx[8:], layer.base_layer.token_embedding.weight[phrase_ids[:8]], atol=0, rtol=0)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "floating-point pixel values"),
        (torch.zeros(2, 32, 32, 3), r"channels last\? use pixel_values.permute"),
        (torch.zeros(3, 32, 32), r"4-D tensor \(batch, 3, 32, 32\)"),
        (torch.zeros(2, 3, 64, 64), r"got shape \(2, 3, 64, 64\)"),
        ([[0.0]], "must be a torch.Tensor"),
    ],
    ids=["uint8", "channels-last", "3-d", "size", "list"],
)
def test_pixel_values_are_checked_with_the_fix(model, pixels, message):
    with pytest.raises(ValueError, match=rf"`pixel_values` .*{message}.*CLIP image processor"):
        model(pixel_values=pixels)
    with pytest.raises(ValueError, match="`extra_pixel_values`"):
        model(pixel_values=torch.zeros(1, 3, 32, 32), extra_pixel_values=torch.zeros(1, 3, 8, 8))
