"""Every world word is exactly one token, and the builder fixes what left-to-right merges get wrong."""

from __future__ import annotations

import pytest
from transformers import CLIPTokenizer

from peft_dor.world.tokenizer import bpe_pieces, build_single_token_tokenizer, single_token_vocabulary


def _left_to_right_merges(words):
    """The old construction: each word's merges written left to right, nothing else."""
    merges, seen = [], set()
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            if (parts[0], parts[1]) not in seen:
                seen.add((parts[0], parts[1]))
                merges.append((parts[0], parts[1]))
            parts = [parts[0] + parts[1], *parts[2:]]
    return merges


def test_left_to_right_merges_split_a_word_that_the_builder_keeps_whole():
    words = ["at", "cat"]
    old = {pair: rank for rank, pair in enumerate(_left_to_right_merges(words))}
    assert bpe_pieces("cat", old) == ["c", "at</w>"]  # the earlier merge (a, t</w>) wins inside "cat"
    tokenizer = build_single_token_tokenizer(words)
    for word in words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids) == [word + "</w>"]


def test_bpe_pieces_agrees_with_the_real_tokenizer():
    words = ["stripe", "striped", "ripe", "pet", "petal", "a", "an"]
    vocab, merges = single_token_vocabulary(words)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    for probe in ["stripes", "rip", "petals", "tape", "banana"]:  # words NOT in the list
        ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids) == bpe_pieces(probe, ranks), probe


def test_adding_words_keeps_earlier_ids():
    first, _ = single_token_vocabulary(["red", "green"])
    second, _ = single_token_vocabulary(["red", "green", "greenish", "reddish"])
    assert all(second[token] == i for token, i in first.items() if not token.startswith("<|"))


@pytest.mark.parametrize("bad", ["Red", "two words", ""])
def test_words_must_be_lower_case_single_words(bad):
    with pytest.raises(ValueError, match="lower-case words"):
        single_token_vocabulary([bad])


def test_every_world_word_is_one_token_of_the_shipped_tokenizer(world_path, world):
    tokenizer = CLIPTokenizer.from_pretrained(world_path)
    ids = tokenizer(world.words, add_special_tokens=False)["input_ids"]
    assert [len(row) for row in ids] == [1] * len(world.words)
    assert len(set(map(tuple, ids))) == len(world.words)
    prompt = tokenizer("a photo of a " + world.nouns[0] + ".")["input_ids"]
    assert len(prompt) == 2 + 6  # SOS a photo of a <noun> . EOS
