"""Text machinery: tokenisation, padding to the longest prompt, the explicit causal mask, slot replacement."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from peft_dor.prompting import PromptLayout, PromptTokenizer, TextPromptContext, TextTower, causal_mask, replace_slots

NAMES = ["cat", "dog", "red apple", "golden retriever dog", "x"]


@pytest.fixture
def tokenizer(tiny_clip_path):
    return AutoTokenizer.from_pretrained(tiny_clip_path)


@pytest.fixture
def prompt_tokenizer(tokenizer):
    return PromptTokenizer(tokenizer, context_length=77)


def test_piecewise_ids_equal_tokenising_the_whole_prompt(tokenizer, prompt_tokenizer):
    prompts = prompt_tokenizer.template_prompts(NAMES, "a photo of a {}.")
    for row, name in enumerate(NAMES):
        expected = tokenizer(f"a photo of a {name}.")["input_ids"]
        got = prompts.input_ids[row, : prompts.eos_index[row] + 1].tolist()
        assert got == expected


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_layout_slots_point_at_the_context_tokens(tokenizer, prompt_tokenizer, position):
    layout = PromptLayout(prefix="X X X X", n_ctx=4, class_token_position=position)
    prompts = prompt_tokenizer.layout_prompts(NAMES, layout)
    x_id = tokenizer("X", add_special_tokens=False)["input_ids"][0]
    for row, name in enumerate(NAMES):
        slots = prompts.slot_index[row].tolist()
        assert all(prompts.input_ids[row, s] == x_id for s in slots)
        assert len(set(slots)) == 4
        # the joined string tokenises to the same ids: slots were built in place, nothing was inserted
        words = {"end": f"X X X X {name}.", "front": f"{name} X X X X.", "middle": f"X X {name} X X."}[position]
        assert prompts.input_ids[row, : prompts.eos_index[row] + 1].tolist() == tokenizer(words)["input_ids"]


def test_phrase_longer_than_n_ctx_keeps_its_tail_as_fixed_words(prompt_tokenizer):
    prompts = prompt_tokenizer.layout_prompts(["cat"], PromptLayout(prefix="a photo of a", n_ctx=2))
    assert prompts.slot_index.tolist() == [[1, 2]]
    assert prompts.eos_index.tolist() == [7]  # SOS a photo of a cat . EOS


def test_prompts_pad_to_the_longest_prompt_not_to_77(prompt_tokenizer):
    prompts = prompt_tokenizer.template_prompts(NAMES, "a photo of a {}.")
    assert prompts.input_ids.shape[1] == int(prompts.eos_index.max()) + 1 < 77


def test_too_long_prompt_is_rejected_with_the_fix(tokenizer):
    short = PromptTokenizer(tokenizer, context_length=8)
    with pytest.raises(ValueError, match="at most 8.*shorter class name"):
        short.template_prompts(["golden retriever dog"], "a photo of a {}.")


def test_n_ctx_larger_than_the_phrase_is_rejected(prompt_tokenizer):
    with pytest.raises(ValueError, match="n_ctx=6.*ctx_init"):
        prompt_tokenizer.layout_prompts(["cat"], PromptLayout(prefix="a photo", n_ctx=6))


def test_causal_mask_shape_and_values():
    mask = causal_mask(3, torch.float32, "cpu")
    assert mask.shape == (1, 1, 3, 3)
    assert (mask[0, 0].diagonal() == 0).all() and mask[0, 0, 0, 1] == torch.finfo(torch.float32).min
    assert mask[0, 0, 2, 0] == 0


def test_replace_slots_overwrites_only_the_slots_and_passes_gradients():
    embeds = torch.zeros(2, 5, 3)
    values = torch.ones(2, 2, 3, requires_grad=True)
    out = replace_slots(embeds, torch.tensor([[1, 2], [3, 4]]), values)
    assert out[0, 1:3].eq(1).all() and out[1, 3:5].eq(1).all()
    assert out[0, [0, 3, 4]].eq(0).all() and out[1, :3].eq(0).all()
    out.sum().backward()
    assert values.grad.eq(1).all()


def _hf_text_features(clip, tokenizer, texts, **padding):
    batch = tokenizer(texts, return_tensors="pt", **padding)
    return clip.get_text_features(input_ids=batch["input_ids"]).pooler_output


@torch.no_grad()
def test_hand_driven_tower_equals_transformers_and_padding_to_longest_is_exact(tiny_clip, tokenizer, prompt_tokenizer):
    texts = [f"a photo of a {n}." for n in NAMES]
    reference = _hf_text_features(tiny_clip, tokenizer, texts, padding="max_length", max_length=77)
    prompts = prompt_tokenizer.template_prompts(NAMES, "a photo of a {}.")
    ours = TextTower(tiny_clip, share_prefix=False)(TextPromptContext(prompts))
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)
    # the shared "[SOS] a photo of a" prefix, encoded once, changes only float32 rounding
    shared = TextTower(tiny_clip)(TextPromptContext(prompts))
    torch.testing.assert_close(shared, reference, atol=1e-5, rtol=0)
    # and transformers itself agrees when it pads to the longest prompt only
    longest = _hf_text_features(tiny_clip, tokenizer, texts, padding="longest")
    torch.testing.assert_close(longest, reference, atol=1e-6, rtol=0)


@torch.no_grad()
def test_without_the_explicit_mask_the_text_tower_is_silently_bidirectional(tiny_clip, prompt_tokenizer):
    prompts = prompt_tokenizer.template_prompts(NAMES, "a photo of a {}.")
    text = tiny_clip.text_model
    hidden = text.embeddings(input_ids=prompts.input_ids)
    masked, unmasked = hidden, hidden
    mask = causal_mask(hidden.shape[1], hidden.dtype, hidden.device)
    for layer in text.encoder.layers:
        masked, unmasked = layer(masked, mask), layer(unmasked, None)
    rows = torch.arange(len(NAMES))
    assert not torch.allclose(masked[rows, prompts.eos_index], unmasked[rows, prompts.eos_index], atol=1e-4)
    reference = TextTower(tiny_clip)(TextPromptContext(prompts))
    pooled = tiny_clip.text_projection(text.final_layer_norm(masked)[rows, prompts.eos_index])
    torch.testing.assert_close(pooled, reference)


@torch.no_grad()
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_tower_matches_transformers_for_both_attention_kernels(tiny_clip_path, tokenizer, implementation):
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(tiny_clip_path, attn_implementation=implementation).eval()
    texts = [f"a photo of a {n}." for n in NAMES]
    reference = _hf_text_features(clip, tokenizer, texts, padding="max_length", max_length=77)
    prompts = PromptTokenizer(tokenizer, 77).template_prompts(NAMES, "a photo of a {}.")
    torch.testing.assert_close(TextTower(clip)(TextPromptContext(prompts)), reference, atol=1e-5, rtol=0)
