"""The shipped world CLIP: plain transformers loads it and it classifies fresh images of every noun far above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

SHIPPED_LIMIT_BYTES = 2 * 1024 * 1024


def test_shipped_folder_is_small_and_safetensors_only(world_path):
    files = [p for p in Path(world_path).iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= SHIPPED_LIMIT_BYTES
    names = {p.name for p in files}
    assert {"config.json", "model.safetensors", "world.json", "preprocessor_config.json"} <= names
    assert not any(p.suffix in {".bin", ".pt", ".pth", ".pkl"} for p in files)


@torch.no_grad()
def test_zero_shot_over_all_nouns_is_far_above_chance(world_path, world):
    clip = CLIPModel.from_pretrained(world_path).eval()
    tokenizer = CLIPTokenizer.from_pretrained(world_path)
    processor = AutoImageProcessor.from_pretrained(world_path)
    rng = np.random.default_rng(2024)  # fresh renders, not the pre-training held-out set
    images = [world.render(noun, rng) for noun in world.nouns for _ in range(4)]
    labels = torch.arange(len(world.nouns)).repeat_interleave(4)
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    text = tokenizer([f"a photo of a {noun}." for noun in world.nouns], padding=True, return_tensors="pt")
    logits = clip(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels)
    accuracy = (logits.logits_per_image.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.5  # chance is 0.01
    # the fixed, fitted temperature: not a learned one that collapsed, not CLIP's saturated 100
    assert 5 < clip.logit_scale.exp().item() < 100
