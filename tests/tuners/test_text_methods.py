"""CoCoOp, KgCoOp, TCP and ProGrad: the numbers each method owns, against independent references.

References are plain transformers (``get_text_features`` / ``get_image_features``, CLIP's own modules driven by
hand) or CoOp, which ``test_coop.py`` checks against transformers. The columns every method shares (save/load,
trainable tensors, ``disable_adapter``, outlier names, bf16) are in ``test_method_matrix.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import get_peft_model
from transformers import CLIPModel, Trainer

from peft_dor import CoCoOpConfig, CoOpConfig, KgCoOpConfig, ProGradConfig, TCPConfig
from peft_dor.dor import default_weight
from peft_dor.prompting import knowledge_distance
from peft_dor.registry import method_spec
from peft_dor.testing import VIT_B16_SIZE, build_tiny_tokenizer, tiny_clip_config
from peft_dor.tuners.prograd import ProGradMixin, prograd_kl_loss, project_conflicting_gradient

from ..conftest import CLASS_NAMES
from ..helpers import reference_clip, tiny_training_args

LABELS = torch.tensor([0, 1, 2, 3])


def peft(path: str, config, seed: int = 0):
    torch.manual_seed(seed)
    return get_peft_model(CLIPModel.from_pretrained(path).eval(), config)


def layer_of(model, index: int | None = None):
    text = model.get_base_model().clip.text_model
    return text.embeddings if index is None else text.encoder.layers[index]


@torch.no_grad()
def clip_text_features(path: str, texts: list[str]) -> torch.Tensor:
    """Normalised ``get_text_features`` of plain transformers (the zero-shot reference)."""
    clip, tokenizer = reference_clip(path)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return F.normalize(clip.get_text_features(**batch).pooler_output, dim=-1)


@torch.no_grad()
def clip_image_features(path: str, pixel_values: torch.Tensor) -> torch.Tensor:
    clip, _ = reference_clip(path)
    return F.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)


# ---------------------------------------------------------------------------------------------------- sizes
@pytest.fixture(scope="module")
def vit_b16(tmp_path_factory):
    """A CLIPModel of ViT-B/16's size (random weights, built once): text 512 x 12 layers, vision 768 x 12, D = 512."""
    tokenizer = build_tiny_tokenizer()
    path = tmp_path_factory.mktemp("vit-b16-tokenizer")
    tokenizer.save_pretrained(path)
    config = tiny_clip_config(
        len(tokenizer),  # the vocabulary covers every id of the tokenizer
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        **copy.deepcopy(VIT_B16_SIZE),
    )
    torch.manual_seed(0)
    return CLIPModel(config), str(path)


@pytest.mark.parametrize(
    ("config_cls", "expected", "parts"),
    [
        (CoCoOpConfig, 35_360, {"cocoop_ctx": 2_048, "cocoop_meta_net": 33_312}),
        (KgCoOpConfig, 2_048, {"kgcoop_ctx": 2_048}),
        (TCPConfig, 331_904, {"tcp_ctx": 2_048, "tcp_tke": 329_856}),
        (ProGradConfig, 8_192, {"prograd_ctx": 8_192}),
    ],
    ids=["cocoop", "kgcoop", "tcp", "prograd"],
)
def test_trainable_parameters_at_vit_b16_size_match_the_spec(vit_b16, config_cls, expected, parts):
    clip, tokenizer_path = vit_b16
    model = get_peft_model(clip, config_cls(class_names=["cat", "dog"], tokenizer_name_or_path=tokenizer_path))
    try:
        assert model.get_nb_trainable_parameters()[0] == expected
        counts = dict.fromkeys(parts, 0)
        for name, param in model.named_parameters():
            if param.requires_grad:
                counts[next(part for part in parts if part in name)] += param.numel()
        assert counts == parts
        if config_cls is TCPConfig:  # the class tokens enter at layer 8 of 12
            assert [
                i for i, layer in enumerate(clip.text_model.encoder.layers) if hasattr(layer, "tcp_tke_linear1")
            ] == [8]
    finally:
        model.unload()


# ---------------------------------------------------------------------------------------------------- CoCoOp
def test_cocoop_logits_equal_coop_with_each_image_own_context(tiny_clip_path, pixel_values):
    cocoop = peft(tiny_clip_path, CoCoOpConfig(class_names=CLASS_NAMES, meta_net_hidden_dim=8))
    layer = layer_of(cocoop)
    with torch.no_grad():
        for param in layer.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn_like(param))
        logits = cocoop.eval()(pixel_values=pixel_values).logits
        # π by hand on plain CLIP's normalised image features
        image = clip_image_features(tiny_clip_path, pixel_values)
        first, second = layer.cocoop_meta_net_linear1["default"], layer.cocoop_meta_net_linear2["default"]
        bias = F.linear(F.relu(F.linear(image, first.weight, first.bias)), second.weight, second.bias)
        contexts = layer.cocoop_ctx["default"] + bias[:, None]
    coop = peft(tiny_clip_path, CoOpConfig(class_names=CLASS_NAMES, ctx_init="a photo of a")).eval()
    for b in range(len(pixel_values)):
        with torch.no_grad():
            layer_of(coop).coop_ctx["default"].copy_(contexts[b])
            expected = coop(pixel_values=pixel_values[b : b + 1]).logits[0]
        torch.testing.assert_close(logits[b], expected, atol=1e-5, rtol=0)


def test_cocoop_chunked_text_encoding_equals_one_pass(tiny_clip_path, pixel_values):
    model = peft(tiny_clip_path, CoCoOpConfig(class_names=CLASS_NAMES, meta_net_hidden_dim=8)).eval()
    with torch.no_grad():
        whole = model(pixel_values=pixel_values, extra_names=["lamp", "kite"])
        model.get_base_model().text_chunk_size = 2
        chunked = model(pixel_values=pixel_values, extra_names=["lamp", "kite"])
    torch.testing.assert_close(chunked.logits, whole.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked.extra_text_embeds, whole.extra_text_embeds, atol=1e-6, rtol=0)


def test_cocoop_outliers_are_conditioned_on_every_image_and_dor_averages_over_both(tiny_clip_path, pixel_values):
    model = peft(tiny_clip_path, CoCoOpConfig(class_names=CLASS_NAMES, meta_net_hidden_dim=8)).train()
    out = model(pixel_values=pixel_values, extra_names=["lamp", "kite"])
    assert out.text_embeds.shape == (4, 5, 24) and out.extra_text_embeds.shape == (4, 2, 24)
    assert not torch.allclose(out.extra_text_embeds[0], out.extra_text_embeds[1])
    # the DOR/KG form averages cos over images and outliers alike (DOR.md §6 quirk 5: never only the last image)
    target = clip_text_features(tiny_clip_path, ["a photo of a lamp.", "a photo of a kite."])
    cos = [
        F.cosine_similarity(f, t, dim=0).item()
        for row in out.extra_text_embeds
        for f, t in zip(row, target, strict=True)
    ]
    expected = torch.tensor(1 - sum(cos) / len(cos))
    torch.testing.assert_close(knowledge_distance(out.extra_text_embeds, target).detach(), expected, atol=1e-6, rtol=0)
    knowledge_distance(out.extra_text_embeds, target).backward()
    assert layer_of(model).cocoop_meta_net_linear1["default"].weight.grad is not None


def test_cocoop_text_needs_images(tiny_clip_path):
    model = peft(tiny_clip_path, CoCoOpConfig(class_names=CLASS_NAMES))
    with pytest.raises(ValueError, match="depend on the image"):
        model.get_base_model().encode_text(["cat"])


# ---------------------------------------------------------------------------------------------------- KgCoOp
def test_kgcoop_loss_is_zero_when_the_context_is_the_template_and_matches_a_hand_computation(
    tiny_clip_path, pixel_values
):
    model = peft(tiny_clip_path, KgCoOpConfig(class_names=CLASS_NAMES)).train()
    assert model.peft_config["default"].kg_weight == 8.0
    out = model(pixel_values=pixel_values, labels=LABELS)
    torch.testing.assert_close(out.losses["kg"], torch.tensor(0.0), atol=1e-5, rtol=0)

    with torch.no_grad():
        layer_of(model).kgcoop_ctx["default"].add_(0.05 * torch.randn(4, 32))
    out = model(pixel_values=pixel_values, labels=LABELS)
    target = clip_text_features(tiny_clip_path, [f"a photo of a {c}." for c in CLASS_NAMES])
    expected = 8.0 * (1 - (out.text_embeds.detach() * target).sum(-1).mean())
    assert out.losses["kg"].item() > 1e-4
    torch.testing.assert_close(out.losses["kg"].detach(), expected, atol=1e-5, rtol=0)
    out.losses["kg"].backward()
    assert layer_of(model).kgcoop_ctx["default"].grad.abs().sum() > 0


def test_kgcoop_targets_come_from_the_one_base_model_with_its_template_and_are_cached(tiny_clip_path, pixel_values):
    template = "a photo of a {}, a type of texture."
    model = peft(tiny_clip_path, KgCoOpConfig(class_names=CLASS_NAMES, template=template, kg_weight=2.0)).train()
    wrapper = model.get_base_model()
    out = model(pixel_values=pixel_values)
    target = wrapper.zero_shot_text_features(CLASS_NAMES, template)
    model(pixel_values=pixel_values)
    assert wrapper.zero_shot_text_features(CLASS_NAMES, template) is target  # computed once
    torch.testing.assert_close(
        target, clip_text_features(tiny_clip_path, [template.format(c) for c in CLASS_NAMES]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(out.losses["kg"], 2.0 * knowledge_distance(out.text_embeds, target), atol=0, rtol=0)
    assert sum(isinstance(m, CLIPModel) for m in model.modules()) == 1
    assert model.eval()(pixel_values=pixel_values).losses == {}  # training only


# ---------------------------------------------------------------------------------------------------- TCP
def tcp_reference(path, names, template, ctx, tke_layers, layer_index):
    """TCP's text features by hand from CLIP's own modules: ctx at layer 0 (with positions), TKE tokens replacing
    slots 1..n at the input of ``layer_index`` (no positions), causal mask, EOS pooling."""
    clip, tokenizer = reference_clip(path)
    batch = tokenizer([f"X X X X {name}." for name in names], padding=True, return_tensors="pt")
    ids = batch["input_ids"]
    eos = (ids == tokenizer.eos_token_id).int().argmax(-1)
    knowledge = clip_text_features(path, [template.format(name) for name in names])
    first, second = tke_layers
    tokens = second(F.linear(knowledge, first.weight, first.bias) * torch.sigmoid(1.702 * first(knowledge)))
    tokens = tokens.reshape(len(names), 4, -1)
    with torch.no_grad():
        embeds = clip.text_model.embeddings.token_embedding(ids)
        embeds[:, 1:5] = ctx
        hidden = clip.text_model.embeddings(inputs_embeds=embeds)
        length = ids.shape[1]
        mask = torch.triu(torch.full((length, length), torch.finfo(hidden.dtype).min), diagonal=1)[None, None]
        for i, layer in enumerate(clip.text_model.encoder.layers):
            if i == layer_index:
                hidden = torch.cat([hidden[:, :1], tokens, hidden[:, 5:]], dim=1)
            hidden = layer(hidden, mask)
        pooled = clip.text_model.final_layer_norm(hidden)[torch.arange(len(names)), eos]
        return F.normalize(clip.text_projection(pooled), dim=-1)


def test_tcp_class_tokens_replace_the_context_at_their_layer(tiny_clip_path):
    template = "a photo of a {}, a type of pet."
    model = peft(tiny_clip_path, TCPConfig(class_names=CLASS_NAMES, class_token_layer=1, template=template))
    wrapper = model.get_base_model()
    names = ["cat", "horse", "lamp"]  # "lamp" is not a class: it gets TKE of its own frozen feature
    with torch.no_grad():
        features = wrapper.encode_text(names)
        tke = (layer_of(model, 1).tcp_tke_linear1["default"], layer_of(model, 1).tcp_tke_linear2["default"])
        expected = tcp_reference(tiny_clip_path, names, template, layer_of(model).tcp_ctx["default"], tke, 1)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=0)


def test_tcp_loss_is_zero_when_context_and_class_tokens_reproduce_the_template(tiny_clip_path, pixel_values):
    model = peft(tiny_clip_path, TCPConfig(class_names=CLASS_NAMES, class_token_layer=1)).train()
    clip, tokenizer = reference_clip(tiny_clip_path)
    ids = tokenizer(["a photo of a cat."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        # by causality the template's hidden states at slots 1..4 are the same for every class
        hidden = clip.text_model(input_ids=ids, output_hidden_states=True).hidden_states[1][0, 1:5]
        layer_of(model).tcp_ctx["default"].copy_(clip.text_model.embeddings.token_embedding(ids[0, 1:5]))
        layer_of(model, 1).tcp_tke_linear2["default"].weight.zero_()
        layer_of(model, 1).tcp_tke_linear2["default"].bias.copy_(hidden.reshape(-1))
    out = model(pixel_values=pixel_values, labels=LABELS)
    assert model.peft_config["default"].knowledge_weight == 8.0
    torch.testing.assert_close(out.losses["tcp"], torch.tensor(0.0), atol=1e-5, rtol=0)
    expected = clip_text_features(tiny_clip_path, [f"a photo of a {c}." for c in CLASS_NAMES])
    torch.testing.assert_close(out.text_embeds.detach(), expected, atol=1e-5, rtol=0)

    with torch.no_grad():
        # a random shift (a constant one would vanish in the next LayerNorm)
        layer_of(model, 1).tcp_tke_linear2["default"].bias.add_(0.05 * torch.randn(4 * 32))
    out = model(pixel_values=pixel_values, labels=LABELS)
    manual = 8.0 * (1 - (out.text_embeds.detach() * expected).sum(-1).mean())
    assert out.losses["tcp"].item() > 1e-4
    torch.testing.assert_close(out.losses["tcp"].detach(), manual, atol=1e-5, rtol=0)


def test_tcp_outlier_knowledge_is_encoded_once_per_word(tiny_clip_path, pixel_values):
    model = peft(tiny_clip_path, TCPConfig(class_names=CLASS_NAMES, class_token_layer=1)).train()
    wrapper = model.get_base_model()
    model(pixel_values=pixel_values, extra_names=["lamp", "kite"])
    cached = len(wrapper._frozen_text._lists)
    for extra in (["kite", "lamp"], ["lamp", "cup"]):
        model(pixel_values=pixel_values, extra_names=extra)
    assert len(wrapper._frozen_text._lists) == cached  # outliers are not cached as whole lists, step after step
    assert len(wrapper._frozen_text._rows) == 3  # ... but once per word


def test_tcp_layout_template_tokenises_like_the_string(tiny_clip_path):
    layout = "X X X X {}, a type of pet."
    model = peft(tiny_clip_path, TCPConfig(class_names=CLASS_NAMES, class_token_layer=1, prompt_template=layout))
    prompts = model.get_base_model().tokenize(["cat", "horse"])
    expected = reference_clip(tiny_clip_path)[1]([layout.format("cat"), layout.format("horse")])
    assert [
        row[: len(ids)].tolist() for row, ids in zip(prompts.input_ids, expected["input_ids"], strict=True)
    ] == expected["input_ids"]
    assert prompts.slot_index.tolist() == [[1, 2, 3, 4]] * 2
    ucf = TCPConfig(class_names=["x"], prompt_template="a photo of a person doing {}.")
    assert ucf.prompt_layout().prefix == "a photo of a person doing" and ucf.prompt_layout().n_ctx == 4


def test_tcp_layer_outside_the_text_tower_is_refused(tiny_clip_path):
    with pytest.raises(ValueError, match="class_token_layer"):
        peft(tiny_clip_path, TCPConfig(class_names=CLASS_NAMES))  # 8, but the tiny tower has 2 layers


# ---------------------------------------------------------------------------------------------------- ProGrad
def test_prograd_init_pads_the_phrase_with_zero_vectors(tiny_clip_path):
    model = peft(tiny_clip_path, ProGradConfig(class_names=CLASS_NAMES, n_ctx=8, ctx_init="a photo of a {}."))
    tokenizer = reference_clip(tiny_clip_path)[1]
    layer = layer_of(model)
    ctx = layer.prograd_ctx["default"]
    phrase = tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    assert ctx.shape == (8, 32) and torch.equal(ctx[:4], torch.zeros(4, 32))
    torch.testing.assert_close(ctx[4:], layer.base_layer.token_embedding.weight[phrase], atol=0, rtol=0)
    prompts = model.get_base_model().tokenize(["cat"])
    assert prompts.input_ids[0].tolist() == tokenizer("X X X X a photo of a cat.")["input_ids"]
    assert prompts.slot_index.tolist() == [list(range(1, 9))]
    assert ProGradConfig(class_names=["x"]).n_ctx == 16


@pytest.mark.parametrize(
    ("grad", "reference", "weight", "expected"),
    [
        ([1.0, -1.0], [0.0, 2.0], 1.0, [1.0, 0.0]),  # conflicting: the component along the guide is removed
        ([1.0, -1.0], [0.0, 2.0], 0.5, [1.0, -0.5]),  # ... or half of it
        ([1.0, 1.0], [0.0, 2.0], 1.0, [1.0, 1.0]),  # aligned: unchanged
        ([1.0, 0.0], [0.0, 3.0], 1.0, [1.0, 0.0]),  # orthogonal: unchanged
        ([1.0, -1.0], [0.0, 0.0], 1.0, [1.0, -1.0]),  # no guide: unchanged
        ([0.0, 0.0], [1.0, 0.0], 1.0, [0.0, 0.0]),
    ],
    ids=["conflicting", "conflicting-half", "aligned", "orthogonal", "zero-guide", "zero-grad"],
)
def test_prograd_projection_on_hand_made_pairs(grad, reference, weight, expected):
    result = project_conflicting_gradient(torch.tensor(grad), torch.tensor(reference), weight)
    torch.testing.assert_close(result, torch.tensor(expected), atol=1e-7, rtol=0)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000))
def test_prograd_projection_never_keeps_a_conflict(seed):
    generator = torch.Generator().manual_seed(seed)
    grad, reference = torch.randn(2, 4, 3, generator=generator)
    result = project_conflicting_gradient(grad, reference)
    assert result.shape == grad.shape
    assert (result * reference).sum() >= -1e-5  # never against the guide
    if (grad * reference).sum() < 0:
        unit = reference / reference.norm()
        torch.testing.assert_close(result, grad - (grad * unit).sum() * unit, atol=1e-6, rtol=0)
    else:
        assert torch.equal(result, grad)


def test_prograd_kl_term_matches_its_definition():
    logits, teacher = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    expected = -(F.softmax(teacher / 2, -1) * F.log_softmax(logits / 2, -1)).sum(-1).mean() * 4
    torch.testing.assert_close(prograd_kl_loss(logits, teacher, temperature=2.0), expected)
    # its gradient is the KL divergence's (they differ by the teacher's entropy)
    kl = F.kl_div(F.log_softmax(logits, -1), F.softmax(teacher, -1), reduction="batchmean")
    torch.testing.assert_close(
        prograd_kl_loss(logits, teacher) - kl, -(F.softmax(teacher, -1) * F.log_softmax(teacher, -1)).sum(-1).mean()
    )


class _ProGradTrainer(ProGradMixin, Trainer):
    pass


def test_prograd_trainer_step_applies_the_projection(tiny_clip_path, pixel_values, tmp_path):
    model = peft(tiny_clip_path, ProGradConfig(class_names=CLASS_NAMES, n_ctx=4), seed=3)
    ctx = layer_of(model).prograd_ctx["default"]
    teacher = (
        clip_image_features(tiny_clip_path, pixel_values)
        @ clip_text_features(tiny_clip_path, [f"a photo of a {c}." for c in CLASS_NAMES]).t()
        * model.get_base_model().clip.logit_scale.exp().detach()
    )
    labels = teacher.argmin(-1)  # train against zero-shot CLIP, so the gradients conflict

    # the update by hand: CE gradient, KL gradient to plain CLIP's zero-shot logits, projection
    model.train()
    out = model(pixel_values=pixel_values, labels=labels)
    g_ce = torch.autograd.grad(out.loss, ctx, retain_graph=True)[0]
    kl = -(F.softmax(teacher, -1) * F.log_softmax(out.logits, -1)).sum(-1).mean()
    g_kl = torch.autograd.grad(kl, ctx)[0]
    assert (g_ce * g_kl).sum() < 0
    unit = g_kl / g_kl.norm()
    lr = 0.5
    expected = ctx.detach() - lr * (g_ce - (g_ce * unit).sum() * unit)
    unprojected = ctx.detach() - lr * g_ce

    rows = [{"pixel_values": pixel_values[i], "labels": int(labels[i])} for i in range(4)]
    args = tiny_training_args(
        str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=1,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_steps=1,
        label_names=["labels"],
    )
    optimizer = torch.optim.SGD([ctx], lr=lr)
    trainer = _ProGradTrainer(model=model, args=args, train_dataset=rows, optimizers=(optimizer, None))
    trainer.train()
    torch.testing.assert_close(ctx.detach(), expected, atol=1e-4, rtol=0)  # float32 sums in another order
    assert not torch.allclose(ctx.detach(), unprojected, atol=1e-2)
    assert any("loss_prograd_kl" in entry for entry in trainer.state.log_history)


def test_prograd_mixin_refuses_other_methods(tiny_clip_path, tmp_path):
    model = peft(tiny_clip_path, CoOpConfig(class_names=CLASS_NAMES, n_ctx=4))
    args = tiny_training_args(str(tmp_path), max_steps=1)
    trainer = _ProGradTrainer(model=model, args=args, train_dataset=[{"pixel_values": torch.zeros(3, 32, 32)}])
    with pytest.raises(ValueError, match="ProGradConfig"):
        trainer.training_step(model, {"pixel_values": torch.zeros(1, 3, 32, 32), "labels": torch.tensor([0])})


# ---------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    ("config_cls", "kwargs", "message"),
    [
        (CoCoOpConfig, {"meta_net_hidden_dim": 0}, "meta_net_hidden_dim"),
        (KgCoOpConfig, {"kg_weight": -1.0}, "kg_weight"),
        (KgCoOpConfig, {"template": "a photo"}, "template"),
        (TCPConfig, {"class_token_layer": 0}, "class_token_layer"),
        (TCPConfig, {"knowledge_weight": -8.0}, "knowledge_weight"),
        (TCPConfig, {"knowledge_hidden_dim": 0}, "knowledge_hidden_dim"),
        (TCPConfig, {"prompt_template": "X X X X"}, "prompt_template"),
        (TCPConfig, {"prompt_template": "X X X X {}.", "ctx_init": "a photo of a"}, "not both"),
        (TCPConfig, {"prompt_template": "X X X X {}.", "class_token_position": "front"}, "class_token_position"),
        (ProGradConfig, {"prograd_lambda": -0.5}, "prograd_lambda"),
        (ProGradConfig, {"kl_temperature": 0.0}, "kl_temperature"),
        (ProGradConfig, {"ctx_init": "{} texture."}, "ctx_init"),
    ],
)
def test_config_validation_names_the_field(config_cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_cls(class_names=CLASS_NAMES, **kwargs)


def test_method_defaults_follow_the_spec():
    cocoop = CoCoOpConfig(class_names=["x"])
    assert (cocoop.ctx_init, cocoop.n_ctx) == ("a photo of a", 4)  # n from the phrase: 4 words
    assert CoCoOpConfig.training_defaults["original"].batch_size == 1
    assert CoCoOpConfig.training_defaults["original"].epochs == 10
    assert KgCoOpConfig(class_names=["x"]).ctx_init == "a photo of a"
    tcp = TCPConfig(class_names=["x"])
    assert (tcp.ctx_init, tcp.n_ctx, tcp.class_token_layer, tcp.knowledge_weight) == (None, 4, 8, 8.0)
    recipe = TCPConfig.training_defaults["original"]
    assert (recipe.optimizer, recipe.learning_rate, recipe.adam_epsilon, recipe.epochs) == ("adam", 0.002, 1e-3, 50)
    assert ProGradConfig(class_names=["x"]).prograd_lambda == 1.0
    for config_cls, key in [
        (CoCoOpConfig, "COCOOP"),
        (KgCoOpConfig, "KGCOOP"),
        (TCPConfig, "TCP"),
        (ProGradConfig, "PROGRAD"),
    ]:
        assert method_spec(config_cls).default_dor_weight == default_weight(key) == 2.0  # 2 for all but CoOp


@pytest.mark.slow
def test_prograd_under_two_process_ddp_matches_one_process(tiny_clip_path, ddp_launch, tmp_path):
    """2 ranks x 4 images = 1 process x 8 images: DDP averages the CE gradients, the trainer the KL guides."""
    from ._prograd_ddp import main

    single = main(tiny_clip_path, str(tmp_path))
    ddp_dir = ddp_launch / "prograd"  # the suite's one torchrun launch ran _prograd_ddp.main on both ranks
    ranks = [torch.load(ddp_dir / f"ctx_{rank}.pt") for rank in range(2)]
    torch.testing.assert_close(ranks[0], ranks[1], atol=0, rtol=0)
    torch.testing.assert_close(ranks[0], single, atol=1e-5, rtol=0)
