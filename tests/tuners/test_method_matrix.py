"""Every method through the same columns, in PEFT's ``TEST_CASES`` style (``tests/test_custom_models.py``).

A case is ``(name, config class, config kwargs)`` from the one case table ``tests/method_cases.py`` that the
reliability tests share, run on each backbone of its ``BACKBONE_CASES`` (the tiny CLIP and the tiny SigLIP of
``conftest.py``). Columns:

* save → ``PeftModel.from_pretrained`` into a fresh CLIP gives identical logits and the right config class;
* only the method's tensors train, receive gradients and are saved; the base model never changes;
* ``disable_adapter()`` gives zero-shot CLIP / SigLIP computed with plain transformers and the method's template;
* outlier names (DOR's ``extra_names``) go through the method's own prompt path: their features equal what the
  same names get as classes;
* a bf16 autocast forward stays close to the fp32 one;
* a few ``DORTrainer`` steps (ProGrad's projection composed in by the trainer) with and without DOR change only the
  method's tensors and log each loss; DOR is on the side the method's spec declares (image for VPT).
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from peft_dor import DORConfig, DORTrainer, ProGradConfig
from peft_dor.registry import method_spec

from ..helpers import tiny_training_args
from ..method_cases import BACKBONE_CASES, CASES, CLASS_NAMES, VOCABULARY

IDS = [case.name for case in CASES]
EXTRA_NAMES = ["lamp", "chair", "kite"]
LABELS = torch.tensor([0, 1, 2, 3])


@pytest.fixture(params=BACKBONE_CASES, ids=[backbone.name for backbone in BACKBONE_CASES])
def backbone(request):
    """``(backbone case, folder of its tiny model)``: the matrix's backbone axis."""
    return request.param, request.getfixturevalue(request.param.path_fixture)


def load_base(path: str):
    """The plain transformers model saved at ``path`` (``CLIPModel`` or ``SiglipModel``, from its config)."""
    return AutoModel.from_pretrained(path).eval()


def build(case, path: str, seed: int = 0):
    _, config_cls, kwargs = case
    torch.manual_seed(seed)
    return get_peft_model(load_base(path), config_cls(class_names=CLASS_NAMES, **kwargs))


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


@torch.no_grad()
def perturb(model, seed: int = 1) -> None:
    """Move every prompt tensor away from its init, so prompted and zero-shot outputs surely differ."""
    generator = torch.Generator().manual_seed(seed)
    for param in trainable(model).values():
        param.add_(0.1 * torch.randn(param.shape, generator=generator))


@torch.no_grad()
def zero_shot_logits(path: str, pixel_values: torch.Tensor, template: str, tokenizer_kwargs=None) -> torch.Tensor:
    """The independent reference: plain transformers' model forward (CLIPModel, SiglipModel) on the hand-crafted
    prompts, tokenised with ``tokenizer_kwargs`` (a backbone case's: as the backbone was pre-trained; CLIP's
    ``padding=True`` by default)."""
    model, tokenizer = load_base(path), AutoTokenizer.from_pretrained(path)
    kwargs = {"padding": True} if tokenizer_kwargs is None else tokenizer_kwargs
    batch = tokenizer([template.format(c) for c in CLASS_NAMES], return_tensors="pt", **kwargs)
    return model(**batch, pixel_values=pixel_values).logits_per_image


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_save_and_reload_gives_identical_logits(case, backbone, pixel_values, tmp_path):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    perturb(model)
    model.eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits
    model.save_pretrained(tmp_path)

    config = PeftConfig.from_pretrained(tmp_path)
    assert type(config) is case[1]
    assert json.loads((tmp_path / "adapter_config.json").read_text())["class_names"] == CLASS_NAMES
    reloaded = PeftModel.from_pretrained(load_base(tiny_path), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, expected, atol=0, rtol=0)
    assert not trainable(reloaded)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_only_the_method_tensors_train_and_are_saved(case, backbone, pixel_values, tmp_path):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    prefix = model.base_model.prefix
    params = trainable(model)
    assert params and all(prefix in name for name in params), sorted(params)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}

    model.train()
    out = model(pixel_values=pixel_values, labels=LABELS)
    (out.loss + sum(out.losses.values(), torch.zeros(()))).backward()
    assert {name for name, p in model.named_parameters() if p.grad is not None} == set(params)
    torch.optim.SGD(params.values(), lr=0.5).step()
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name

    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert set(saved) == {name.replace(".default", "") for name in params}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_disable_adapter_gives_zero_shot_clip(case, backbone, pixel_values):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    perturb(model)
    model.eval()
    template = model.peft_config["default"].template
    expected = zero_shot_logits(tiny_path, pixel_values, template, backbone[0].reference_tokenizer_kwargs)
    with torch.no_grad(), model.disable_adapter():
        torch.testing.assert_close(model(pixel_values=pixel_values).logits, expected, atol=1e-5, rtol=0)
    with torch.no_grad():  # and the prompts are back after the block
        assert not torch.allclose(model(pixel_values=pixel_values).logits, expected, atol=1e-3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outlier_names_take_the_method_prompt_path(case, backbone, pixel_values):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    perturb(model)
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=pixel_values, extra_names=EXTRA_NAMES)
        model.set_class_names(CLASS_NAMES + EXTRA_NAMES)
        as_classes = model(pixel_values=pixel_values).text_embeds
    n_classes = len(CLASS_NAMES)
    assert out.extra_text_embeds.shape == (*out.text_embeds.shape[:-2], len(EXTRA_NAMES), out.text_embeds.shape[-1])
    torch.testing.assert_close(out.extra_text_embeds, as_classes[..., n_classes:, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.text_embeds, as_classes[..., :n_classes, :], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bf16_autocast_forward_is_close_to_fp32(case, backbone, pixel_values):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    perturb(model)
    model.eval()
    scale = model.get_base_model().clip.logit_scale.exp()
    with torch.no_grad():
        fp32 = model(pixel_values=pixel_values).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(pixel_values=pixel_values).logits
    # transformers' CLIP tests compare bf16 with fp32 at 3e-2; logits are scaled cosines
    torch.testing.assert_close(bf16.float() / scale, fp32 / scale, atol=3e-2, rtol=0)


@pytest.mark.parametrize("with_dor", [False, True], ids=["plain", "dor"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trainer_steps_with_and_without_dor(case, with_dor, backbone, tmp_path):
    tiny_path = backbone[1]
    model = build(case, tiny_path)
    config = model.peft_config["default"]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    rows = [{"pixel_values": torch.randn(3, 32, 32, generator=generator), "labels": i % 5} for i in range(8)]
    dor = None
    if with_dor:
        side = method_spec(config).dor_side
        images = torch.randn(6, 3, 32, 32, generator=generator) if side == "image" else None
        dor = DORConfig(
            vocabulary=VOCABULARY, pool_size=8, num_outliers=3, side=side, outlier_images=images, cache_features=False
        )
    args = tiny_training_args(
        str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=0.01, logging_steps=1
    )
    trainer = DORTrainer(model=model, args=args, train_dataset=rows, dor=dor, compute_metrics=None)
    trainer.train()

    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= set(trainable(model)), sorted(changed - set(trainable(model)))
    logs = {key for entry in trainer.state.log_history for key in entry}
    assert "loss_ce" in logs and ("loss_dor" in logs) == with_dor
    model.train()
    with torch.no_grad():
        method_losses = model(pixel_values=rows[0]["pixel_values"][None], labels=torch.tensor([0])).losses
    assert {f"loss_{name}" for name in method_losses} <= logs
    if isinstance(config, ProGradConfig):
        assert "loss_prograd_kl" in logs
