"""The world: nouns, attributes, rendering, captions and their consistency."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from peft_dor.world import build_world, load_world
from peft_dor.world.pretrain import caption_constraints, match_matrix, pixel_values
from peft_dor.world.world import COLOURS, PATTERNS, SHAPES, SIZES


def test_nouns_are_distinct_made_up_words_each_one_attribute_combination():
    world = build_world()
    assert len(world.nouns) == len(set(world.nouns)) == len(COLOURS) * len(SHAPES) * len(PATTERNS) == 100
    combos = {tuple(sorted(world.attributes(n).items())) for n in world.nouns}
    assert len(combos) == 100
    assert not set(world.nouns) & set(world.attribute_words)
    assert build_world().nouns == world.nouns  # deterministic


def test_shipped_world_is_the_built_world(world):
    assert world.nouns == build_world().nouns
    assert world.noun_attributes == build_world().noun_attributes


def test_render_is_deterministic_and_32_px(world):
    noun = world.nouns[7]
    a = world.render(noun, np.random.default_rng(3))
    b = world.render(noun, np.random.default_rng(3))
    c = world.render(noun, np.random.default_rng(4))
    assert isinstance(a, Image.Image) and a.size == (32, 32) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_colour_shows_in_the_pixels(world):
    rng = np.random.default_rng(0)
    red = np.mean([np.asarray(world.render(n, rng, "big"), float) for n in world.nouns_with(colour="red")], axis=0)
    blue = np.mean([np.asarray(world.render(n, rng, "big"), float) for n in world.nouns_with(colour="blue")], axis=0)
    centre = (slice(12, 20), slice(12, 20))
    assert red[centre][..., 0].mean() > red[centre][..., 2].mean() + 40
    assert blue[centre][..., 2].mean() > blue[centre][..., 0].mean() + 40


def test_errors_name_the_fix(world, tmp_path):
    with pytest.raises(KeyError, match="not a noun"):
        world.render("dog", np.random.default_rng(0))
    with pytest.raises(ValueError, match="`size`"):
        world.render(world.nouns[0], np.random.default_rng(0), size="huge")
    with pytest.raises(FileNotFoundError, match="peft_dor.world.pretrain"):
        load_world(tmp_path)
    (tmp_path / "world.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="version"):
        load_world(tmp_path)


def test_sampled_captions_are_true_of_their_image_and_the_match_matrix_agrees(world):
    rng = np.random.default_rng(0)
    nouns = [world.nouns[i] for i in rng.integers(100, size=64)]
    sizes = [SIZES[i] for i in rng.integers(2, size=64)]
    captions = [world.sample_caption(n, s, rng) for n, s in zip(nouns, sizes, strict=True)]
    assert all(world.caption_matches(c, n, s) for c, n, s in zip(captions, nouns, sizes, strict=True))
    codes = np.array(
        [
            [world.nouns.index(n), SIZES.index(s)]
            + [
                list(COLOURS).index(world.attributes(n)["colour"]),
                SHAPES.index(world.attributes(n)["shape"]),
                PATTERNS.index(world.attributes(n)["pattern"]),
            ]
            for n, s in zip(nouns, sizes, strict=True)
        ]
    )
    matrix = match_matrix(codes, np.stack([caption_constraints(world, c) for c in captions]))
    expected = np.array(
        [[world.caption_matches(c, n, s) for c in captions] for n, s in zip(nouns, sizes, strict=True)]
    )
    assert np.array_equal(matrix, expected)
    assert matrix.diagonal().all() and not matrix.all()


def test_attribute_caption_matching(world):
    noun = world.nouns_with(colour="red", shape="round", pattern="striped")[0]
    assert world.caption_matches("a picture of a big red thing.", noun, "big")
    assert not world.caption_matches("a picture of a small red thing.", noun, "big")
    assert not world.caption_matches("a blue thing.", noun, "big")
    assert world.caption_matches(f"a photo of a {noun}.", noun, "small")
    assert not world.caption_matches(f"a photo of a {world.nouns[-1]}.", noun, "small")


def test_fast_pixel_path_equals_the_image_processor(world_path, world):
    rng = np.random.default_rng(0)
    arrays = np.stack([world.render_array(n, rng) for n in world.nouns[:4]])
    processor = AutoImageProcessor.from_pretrained(world_path)
    expected = processor([Image.fromarray(a) for a in arrays], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values(arrays), expected, atol=1e-5, rtol=0)
