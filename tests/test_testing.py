"""The offline tiny CLIP: a real CLIPModel, a real CLIP tokenizer, found by name_or_path."""

from __future__ import annotations

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from peft_dor.testing import TINY_WORDS, build_tiny_clip


def test_tiny_clip_loads_offline_with_its_tokenizer_and_processor(tiny_clip_path):
    clip = CLIPModel.from_pretrained(tiny_clip_path)
    tokenizer = AutoTokenizer.from_pretrained(clip.name_or_path)
    processor = AutoImageProcessor.from_pretrained(tiny_clip_path)
    assert type(tokenizer).__name__ == "CLIPTokenizer"
    ids = tokenizer("a photo of a cat.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", ".</w>"]
    assert clip.config.text_config.eos_token_id == tokenizer.eos_token_id
    assert max(tokenizer.get_vocab().values()) < clip.config.text_config.vocab_size
    # unknown words still tokenise (byte-level BPE falls back to characters)
    assert len(tokenizer("zygomorphic", add_special_tokens=False)["input_ids"]) > 1
    assert processor.crop_size["height"] == clip.config.vision_config.image_size
    assert set(TINY_WORDS) >= {"photo", "cat", "x"}


def test_same_seed_same_weights_and_no_rebuild(tmp_path):
    first = build_tiny_clip(tmp_path / "a", seed=3)
    second = build_tiny_clip(tmp_path / "b", seed=3)
    a, b = CLIPModel.from_pretrained(first), CLIPModel.from_pretrained(second)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    stamp = (tmp_path / "a" / "config.json").stat().st_mtime_ns
    assert build_tiny_clip(tmp_path / "a", seed=3) == first
    assert (tmp_path / "a" / "config.json").stat().st_mtime_ns == stamp


def test_every_tiny_word_is_one_token():
    # Left-to-right merges alone split 11 of these words (BPE applies merges by rank, not by position).
    from peft_dor.testing import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    ids = tokenizer(list(TINY_WORDS), add_special_tokens=False)["input_ids"]
    split = {word: row for word, row in zip(TINY_WORDS, ids, strict=True) if len(row) != 1}
    assert not split
