"""The world SigLIP: the pre-training option builds a SiglipModel trained with the sigmoid loss, and the shipped one
loads in plain transformers, classifies zero-shot far above chance and runs through the library's SigLIP path with the
world's CLIPTokenizer (BOS and EOS)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, CLIPTokenizer, SiglipModel

from peft_dor.world import load_world, world_siglip_path
from peft_dor.world.pretrain import RECIPES, SIGLIP_TEXT_LENGTH, fit_logit_bias, main, sigmoid_loss, text_inputs

SHORT = ["--steps", "2", "--batch_size", "16", "--held_out_per_noun", "1", "--eval_every", "1", "--threads", "1"]
SHIPPED_LIMIT_BYTES = 2 * 1024 * 1024


def test_sigmoid_loss_is_the_pairwise_logistic_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=g)
    matches = torch.rand(4, 5, generator=g) < 0.3
    # the SigLIP paper: -1/|B| sum_i sum_j log sigmoid(z_ij * logit_ij), z = +1 for a true pair and -1 otherwise
    expected = (
        sum(
            -math.log(1 / (1 + math.exp(-(1 if matches[i, j] else -1) * logits[i, j].item())))
            for i in range(4)
            for j in range(5)
        )
        / 4
    )
    assert math.isclose(sigmoid_loss(logits, matches).item(), expected, rel_tol=1e-5)
    assert RECIPES["siglip"].loss is sigmoid_loss and RECIPES["siglip"].model_class == "SiglipModel"


def test_fit_logit_bias_sets_the_expected_matches_to_the_true_ones():
    g = torch.Generator().manual_seed(0)
    logits = 5 * torch.randn(3000, 6, generator=g)
    labels = torch.randint(6, (3000,), generator=g)
    bias = fit_logit_bias(logits, labels)
    # the pairwise NLL is minimal where its derivative, sum(sigmoid(logit + b)) - #positives, vanishes
    assert abs(torch.sigmoid(logits.double() + bias).sum().item() - len(labels)) < 1e-3 * len(labels)


def test_pretrain_option_builds_a_siglip_with_a_learned_scale_and_bias(tmp_path):
    out = tmp_path / "model"
    log = main(["--backbone", "siglip", "--output_dir", str(out), *SHORT])
    model = SiglipModel.from_pretrained(out)
    tokenizer = CLIPTokenizer.from_pretrained(out)
    assert model.config.text_config.max_position_embeddings == SIGLIP_TEXT_LENGTH
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.model_max_length == SIGLIP_TEXT_LENGTH  # padding="max_length" gives the tower's length
    assert log["config"]["backbone"] == "siglip"
    # the scale and bias trained from SigLIP's initialisation (log 10, -10); the shipped pair is the fitted one
    assert log["learned_logit_scale"] != 10.0 and log["learned_logit_bias"] != -10.0
    assert math.isclose(model.logit_scale.exp().item(), log["fitted_logit_scale"], rel_tol=1e-5)
    assert math.isclose(model.logit_bias.item(), log["fitted_logit_bias"], rel_tol=1e-5)
    text = text_inputs(model, tokenizer, ["a photo of a thing."])
    assert set(text) == {"input_ids"} and text["input_ids"].shape == (1, SIGLIP_TEXT_LENGTH)  # fixed length, no mask


def test_shipped_folder_is_small_and_safetensors_only():
    files = [p for p in Path(world_siglip_path()).iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= SHIPPED_LIMIT_BYTES
    assert {"config.json", "model.safetensors", "world.json", "pretrain_log.json"} <= {p.name for p in files}
    assert not any(p.suffix in {".bin", ".pt", ".pth", ".pkl"} for p in files)
    assert json.loads((Path(world_siglip_path()) / "pretrain_log.json").read_text())["config"]["backbone"] == "siglip"


@pytest.fixture(scope="module")
def shipped():
    path = world_siglip_path()
    return SiglipModel.from_pretrained(path).eval(), CLIPTokenizer.from_pretrained(path), load_world(path), path


@torch.no_grad()
def test_shipped_siglip_zero_shot_over_all_nouns_is_far_above_chance(shipped):
    model, tokenizer, world, path = shipped
    processor = AutoImageProcessor.from_pretrained(path)
    rng = np.random.default_rng(2024)  # fresh renders, not the pre-training held-out set
    images = [world.render(noun, rng) for noun in world.nouns for _ in range(4)]
    labels = torch.arange(len(world.nouns)).repeat_interleave(4)
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    # SigLIP's own way: every text padded to the fixed length, no attention mask
    text = tokenizer([f"a photo of a {n}." for n in world.nouns], padding="max_length", return_tensors="pt")
    logits = model(input_ids=text["input_ids"], pixel_values=pixels).logits_per_image
    assert text["input_ids"].shape[1] == SIGLIP_TEXT_LENGTH
    assert (logits.argmax(1) == labels).float().mean().item() > 0.1  # chance is 0.01


@torch.no_grad()
def test_library_siglip_path_accepts_the_world_clip_tokenizer(shipped):
    from peft import get_peft_model

    from peft_dor import CoOpConfig
    from peft_dor.world.pretrain import logits_of

    model, tokenizer, world, path = shipped
    names = world.nouns[:6]
    config = CoOpConfig(class_names=names, ctx_init="a photo of a", template="a photo of a {}.")
    peft_model = get_peft_model(SiglipModel.from_pretrained(path).eval(), config)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    text = text_inputs(model, tokenizer, [f"a photo of a {n}." for n in names])
    text_features = F.normalize(model.get_text_features(**text).pooler_output, dim=-1)
    image_features = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    expected = logits_of(model, image_features, text_features)
    torch.testing.assert_close(peft_model(pixel_values=pixels).logits, expected, atol=1e-5, rtol=0)
