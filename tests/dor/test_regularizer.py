"""DORConfig and the DOR loss: hand computations on the tiny CLIP, text side and image side."""

from __future__ import annotations

import pytest
import torch

from peft_dor import DORConfig, DORRegularizer
from peft_dor.dor import default_weight, method_key, outlier_drift

from .conftest import CLASS_NAMES


def _regularizer(vocabulary, tmp_path, **overrides):
    return DORRegularizer(DORConfig(vocabulary=vocabulary, pool_size=20, cache_dir=str(tmp_path), **overrides))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight", -1.0),
        ("pool_size", 0),
        ("num_outliers", 0),
        ("selection", "nearest"),
        ("resample", "batch"),
        ("sampling", "weighted"),
        ("side", "both"),
        ("temperature", 0.0),
        ("template", "a photo of a"),
        ("class_template", "{} {}"),
        ("seed", -3),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DORConfig(**{field: value})


def test_config_image_side_needs_images():
    with pytest.raises(ValueError, match="outlier_images"):
        DORConfig(side="image")
    assert DORConfig(vocabulary=("a", "b")).vocabulary == ["a", "b"]
    assert DORConfig(vocabulary=["a"]).to_dict()["vocabulary"] == "<1 terms>"


def test_default_weight_follows_the_method(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4)
    assert method_key(model) == "COOP"
    dor = _regularizer(vocabulary, tmp_path)
    assert dor.weight is None
    dor.build_pool(model, progress=False)
    assert dor.weight == 8.0 and dor.num_outliers == len(CLASS_NAMES)
    assert default_weight("MAPLE") == default_weight("KGCOOP") == default_weight(None) == 2.0
    explicit = _regularizer(vocabulary, tmp_path, weight=0.5, num_outliers=3)
    explicit.build_pool(model, progress=False)
    assert explicit.weight == 0.5 and explicit.num_outliers == 3
    assert len(explicit.draw(step=0).names) == 3


def test_loss_equals_hand_computation(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4).train()
    wrapper = model.get_base_model()
    dor = _regularizer(vocabulary, tmp_path)
    dor.build_pool(model, progress=False)
    draw = dor.draw(step=5)
    out = model(pixel_values=torch.randn(3, 3, 32, 32), labels=torch.tensor([0, 1, 2]), **draw.model_kwargs())
    loss = dor.loss(out, draw)
    prompted = wrapper.encode_text(draw.names)
    target = wrapper.zero_shot_text_features(draw.names, "a photo of a {}.")
    by_hand = 1 - sum(float(prompted[i].detach() @ target[i]) for i in range(len(draw.names))) / len(draw.names)
    assert loss.item() == pytest.approx(by_hand, abs=1e-5)
    assert loss.item() > 0.01
    loss.backward()  # the gradient reaches the learned context
    ctx = wrapper.clip.text_model.embeddings.coop_ctx["default"]
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0


def test_loss_is_zero_when_the_prompt_is_the_template_and_grows_when_it_moves(make_coop, vocabulary, tmp_path):
    model = make_coop(ctx_init="a photo of a").train()
    dor = _regularizer(vocabulary, tmp_path)
    dor.build_pool(model, progress=False)
    draw = dor.draw(step=0)
    pixels = torch.randn(2, 3, 32, 32)
    assert dor.loss(model(pixel_values=pixels, **draw.model_kwargs()), draw).item() == pytest.approx(0.0, abs=1e-6)
    ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
    with torch.no_grad():  # a random move (a constant shift would vanish in CLIP's LayerNorms)
        ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(0)))
    assert dor.loss(model(pixel_values=pixels, **draw.model_kwargs()), draw).item() > 1e-3


def test_image_conditioned_prompts_average_the_loss_over_images(make_coop, vocabulary, tmp_path):
    model = make_coop(method="CoCoOpConfig").train()
    wrapper = model.get_base_model()
    dor = _regularizer(vocabulary, tmp_path)
    dor.build_pool(model, progress=False)
    assert dor.weight == 2.0  # CoCoOp's default
    draw = dor.draw(step=1)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = model(pixel_values=pixels, labels=torch.tensor([0, 1, 2]), **draw.model_kwargs())
    assert out.extra_text_embeds.shape == (3, len(CLASS_NAMES), out.image_embeds.shape[-1])  # per image
    with torch.no_grad():
        prompted = wrapper.encode_text(draw.names, wrapper.encode_image(pixels))  # (images, B, D)
    target = wrapper.zero_shot_text_features(draw.names, "a photo of a {}.")
    per_image = [1 - float((prompted[i] * target).sum(-1).mean()) for i in range(3)]
    assert dor.loss(out, draw).item() == pytest.approx(sum(per_image) / 3, abs=1e-5)


def test_drift_averages_over_images_for_image_conditioned_prompts():
    generator = torch.Generator().manual_seed(0)
    prompted = torch.nn.functional.normalize(torch.randn(4, 6, 8, generator=generator), dim=-1)  # (images, B, D)
    targets = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=-1)
    per_image = [float(outlier_drift(prompted[i], targets)) for i in range(4)]
    assert float(outlier_drift(prompted, targets)) == pytest.approx(sum(per_image) / 4, abs=1e-6)
    assert float(outlier_drift(targets, targets)) == pytest.approx(0.0, abs=1e-6)


def test_errors_before_build_and_without_extra_features(make_coop, vocabulary, tmp_path):
    model = make_coop(n_ctx=4)
    dor = _regularizer(vocabulary, tmp_path)
    with pytest.raises(RuntimeError, match="build_pool"):
        dor.draw(step=0)
    dor.build_pool(model, progress=False)
    draw = dor.draw(step=0)
    with pytest.raises(ValueError, match="model_kwargs"):
        dor.loss(model(pixel_values=torch.randn(1, 3, 32, 32)), draw)


def test_image_side_is_the_default_for_vpt_and_equals_hand_computation(make_coop):
    model = make_coop(method="VPTConfig").train()
    wrapper = model.get_base_model()
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="outlier_images"):
        DORRegularizer(DORConfig()).build_pool(model, progress=False)  # VPT defaults to the image side
    dor = DORRegularizer(DORConfig(outlier_images=images, num_outliers=3))
    dor.build_pool(model, progress=False)
    assert (dor.side, dor.weight) == ("image", 2.0)
    draw = dor.draw(step=0)
    out = model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1]), **draw.model_kwargs())
    chosen = images[dor.pool.indices[draw.positions]]
    with torch.no_grad():
        prompted = wrapper.encode_image(chosen)  # through the visual prompts
    with model.disable_adapter():  # independent reference: transformers' CLIP image path, prompts off
        frozen = torch.nn.functional.normalize(
            wrapper.clip.get_image_features(pixel_values=chosen).pooler_output, dim=-1
        ).detach()
    by_hand = 1 - float((prompted * frozen).sum(-1).mean())
    assert dor.loss(out, draw).item() == pytest.approx(by_hand, abs=1e-5)
    assert by_hand > 1e-4


def test_image_side_targets_are_zero_shot_and_cached_per_image(make_coop):
    model = make_coop(n_ctx=4).train()
    wrapper = model.get_base_model()
    images = torch.randn(9, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dor = DORRegularizer(DORConfig(side="image", outlier_images=images, num_outliers=4))
    dor.build_pool(model, progress=False)
    assert len(dor.pool) == 9 and dor.pool.names is None
    zero_shot_rows = []

    def count(module, args):
        if any(layer.suspended for layer in wrapper.prompt_layers()):
            zero_shot_rows.append(args[0].shape[0])

    wrapper.clip.vision_model.post_layernorm.register_forward_pre_hook(count)
    drawn = set()
    for step in range(6):
        draw = dor.draw(step=step)
        drawn.update(draw.positions.tolist())
        out = model(pixel_values=torch.randn(2, 3, 32, 32), **draw.model_kwargs())
        # CoOp leaves the vision tower alone, so prompted and zero-shot image features agree
        assert dor.loss(out, draw).item() == pytest.approx(0.0, abs=1e-6)
        reference = wrapper.zero_shot_image_features(images[dor.pool.indices[draw.positions]])
        torch.testing.assert_close(draw.targets, reference)
    # each image's target was encoded once, the first time it was drawn (the reference calls above add 4 per step)
    assert sum(zero_shot_rows) - 6 * 4 == len(drawn)


def test_unset_pool_size_takes_every_candidate_up_to_5000(make_coop, vocabulary, tmp_path):
    from peft_dor.dor import clean_terms, term_key
    from peft_dor.dor.config import DEFAULT_POOL_SIZE

    assert DORConfig().pool_size is None and DEFAULT_POOL_SIZE == 5000
    model = make_coop()
    dor = DORRegularizer(DORConfig(vocabulary=vocabulary, cache_dir=str(tmp_path)))
    dor.build_pool(model, progress=False)
    class_keys = {term_key(name) for name in model.get_base_model().class_names}
    assert len(dor.pool) == len([term for term in clean_terms(vocabulary) if term_key(term) not in class_keys])
    with pytest.raises(ValueError, match="only 0 terms"):
        DORRegularizer(DORConfig(vocabulary=["cat"], cache_features=False)).build_pool(model, progress=False)
