"""The pre-training script keeps working (a few steps), and its loss and scale fit are right."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

from peft_dor.world import load_world
from peft_dor.world.pretrain import PretrainConfig, fit_logit_scale, main, multi_positive_loss

SHORT = ["--steps", "3", "--batch_size", "16", "--held_out_per_noun", "1", "--eval_every", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("world-clip") / "model"
    log = main(["--output_dir", str(out), *SHORT])
    return out, log


def test_a_short_run_writes_a_folder_plain_transformers_loads(short_run):
    out, log = short_run
    clip = CLIPModel.from_pretrained(out)
    tokenizer = CLIPTokenizer.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    world = load_world(out)
    assert processor.crop_size["height"] == clip.config.vision_config.image_size == world.image_size == 32
    assert clip.config.text_config.vocab_size == len(tokenizer)
    assert clip.config.text_config.eos_token_id == tokenizer.eos_token_id
    assert [s["step"] for s in log["curve"]] == [2, 3]
    assert math.isclose(clip.logit_scale.exp().item(), log["fitted_logit_scale"], rel_tol=1e-5)
    saved = json.loads((out / "pretrain_log.json").read_text())
    assert saved["config"]["steps"] == 3 and saved["parameters"] == sum(p.numel() for p in clip.parameters())
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # safetensors only


def test_same_seed_same_weights(short_run, tmp_path):
    out, _ = short_run
    again = tmp_path / "again"
    main(["--output_dir", str(again), *SHORT])
    first, second = load_file(str(out / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_refuses_to_overwrite_a_model(short_run):
    out, _ = short_run
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        main(["--output_dir", str(out), *SHORT])


def test_bad_settings_fail_before_work():
    with pytest.raises(ValueError, match="`steps`"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="noun_caption_fraction"):
        PretrainConfig(noun_caption_fraction=1.5)


def test_multi_positive_loss_is_clip_loss_with_identity_matches():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 6, generator=g)
    expected = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.t(), torch.arange(6))) / 2
    torch.testing.assert_close(multi_positive_loss(logits, torch.eye(6, dtype=torch.bool)), expected)


def test_multi_positive_loss_spreads_the_target_over_every_true_caption():
    logits = torch.zeros(2, 3)
    matches = torch.tensor([[True, True, False], [False, True, True]])
    # uniform logits: each direction costs log(number of candidates), whatever the positives
    expected = torch.tensor((math.log(3) + math.log(2)) / 2)
    torch.testing.assert_close(multi_positive_loss(logits, matches), expected)
    # putting the mass on the true captions lowers it
    assert multi_positive_loss(5.0 * matches.float(), matches) < expected


def test_fit_logit_scale_recovers_a_calibrated_scale():
    g = torch.Generator().manual_seed(0)
    sims = torch.rand(4000, 8, generator=g) * 0.5
    labels = torch.multinomial(torch.softmax(20.0 * sims, dim=1), 1, generator=g).squeeze(1)
    assert abs(fit_logit_scale(sims, labels) - 20.0) < 2.0
