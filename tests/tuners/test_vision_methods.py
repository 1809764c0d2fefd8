"""VPT, IVLP, MaPLe and PromptSRC: what the shared method matrix does not cover.

Parameter counts at ViT-B/16 size, the vision sequence and CLS pooling, the text prompt layout, MaPLe's cross-tower
coupling (save, copy, several adapters, DDP), PromptSRC's losses against a hand computation with plain transformers,
VPT's cached text side, and Gaussian prompt aggregation in a real Trainer run.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import get_peft_model
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, Trainer, TrainerCallback, TrainingArguments

from peft_dor import IVLPConfig, MaPLeConfig, PromptSRCConfig, VPTConfig
from peft_dor.testing import build_tiny_clip, build_tiny_tokenizer
from peft_dor.tuners.maple import MaPLeVisionLayer
from peft_dor.tuners.promptsrc.gpa import GPACallback, gpa_weights

from ..method_cases import VISION_CASES
from .test_method_matrix import perturb, trainable, zero_shot_logits

N_TOKENS = 17  # CLS + 16 patches in the tiny CLIP
#: the matrix's cases plus two that only these checks need
CASES = [
    *VISION_CASES,
    ("ivlp-text-only", IVLPConfig, {"text_depth": 2, "vision_tokens": 0}),
    ("maple-random-init", MaPLeConfig, {"depth": 2, "ctx_init": None}),
]
LABELS = torch.tensor([0, 1, 2, 3])


def build(path: str, config_cls, class_names, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return get_peft_model(CLIPModel.from_pretrained(path).eval(), config_cls(class_names=class_names, **kwargs))


def record(store: dict, key, what: str = "input"):
    """A forward hook that keeps the module's first input (or its output) under ``store[key]`` and changes nothing."""

    def hook(module, args, out):
        store.setdefault(key, args[0] if what == "input" else out)

    return hook


def vision_tokens(config) -> int:
    return config.n_ctx if isinstance(config, MaPLeConfig) else config.vision_tokens


# ---------------------------------------------------------------------------------------------- ViT-B/16 parameters
@pytest.fixture(scope="module")
def vit_b16(tmp_path_factory):
    """A random CLIP of ViT-B/16's shape and a tokenizer directory, built once.

    ``CLIPConfig``'s defaults are ViT-B/32's (text 512 x 12 layers x 8 heads, vision 768 x 12 x 12 at 224 px,
    projection 512); patch 16 makes it ViT-B/16. The MLPs are shrunk: they hold no prompt parameter.
    """
    tokenizer = build_tiny_tokenizer()
    folder = tmp_path_factory.mktemp("vit-b16-tokenizer")
    tokenizer.save_pretrained(folder)
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "intermediate_size": 64, **special},
        vision_config={"patch_size": 16, "intermediate_size": 64},
    )
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (512, 12, 8)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (768, 12, 12)
    assert (vision.image_size, config.projection_dim) == (224, 512)
    return {"clip": CLIPModel(config), "tokenizer": str(folder)}


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "expected"),
    [
        (VPTConfig, {}, 6_144),
        (VPTConfig, {"deep": True}, 73_728),
        (IVLPConfig, {}, 46_080),
        (IVLPConfig, {"n_ctx": 2, "vision_tokens": 2, "text_depth": 12, "vision_depth": 12}, 30_720),
        (MaPLeConfig, {}, 3_555_072),
        (PromptSRCConfig, {}, 46_080),
    ],
    ids=["vpt-shallow", "vpt-deep", "ivlp-4+4", "ivlp-2+2", "maple", "promptsrc"],
)
def test_trainable_parameters_at_vit_b16_size_equal_the_spec(vit_b16, config_cls, kwargs, expected):
    config = config_cls(class_names=["cat", "dog"], tokenizer_name_or_path=vit_b16["tokenizer"], **kwargs)
    model = get_peft_model(vit_b16["clip"], config)
    try:
        assert model.get_nb_trainable_parameters()[0] == expected
    finally:
        vit_b16["clip"] = model.unload()  # the next case starts from the plain CLIPModel again


# ---------------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_vision_sequence_grows_by_n_v_and_cls_is_pooled(case, tiny_clip_path, class_names, pixel_values):
    model = build(tiny_clip_path, case[1], class_names, **case[2])
    vision = model.get_base_model().clip.vision_model
    seen = {}
    vision.pre_layrnorm.register_forward_hook(record(seen, "input"))
    vision.encoder.layers[-1].register_forward_hook(record(seen, "last", "output"))
    vision.post_layernorm.register_forward_hook(record(seen, "pooled"))
    with torch.no_grad():
        model(pixel_values=pixel_values)
    assert seen["input"].shape[1] == N_TOKENS + vision_tokens(model.peft_config["default"])
    torch.testing.assert_close(seen["pooled"], seen["last"][:, 0], atol=0, rtol=0)


@pytest.fixture(scope="module")
def reference_logits(tiny_clip_path):
    """Zero-shot CLIP with plain transformers on the conftest images: the independent reference."""
    from ..conftest import CLASS_NAMES

    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return zero_shot_logits(tiny_clip_path, pixel_values, "a photo of a {}."), CLASS_NAMES, pixel_values


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_unload_gives_back_zero_shot_clip(case, tiny_clip_path, class_names, pixel_values, reference_logits):
    model = build(tiny_clip_path, case[1], class_names, **case[2])
    perturb(model)
    clip = model.unload()
    assert type(clip.vision_model.embeddings).__name__ == "CLIPVisionEmbeddings"
    assert all(type(layer).__name__ == "CLIPEncoderLayer" for layer in clip.vision_model.encoder.layers)
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    batch = tokenizer([f"a photo of a {c}." for c in class_names], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = clip(**batch, pixel_values=pixel_values).logits_per_image
    expected, names, images = reference_logits
    assert names == class_names and torch.equal(images, pixel_values)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- text layout
@pytest.mark.parametrize("config_cls", [IVLPConfig, MaPLeConfig, PromptSRCConfig])
def test_two_token_init_keeps_the_rest_of_the_phrase_fixed(tiny_clip_path, class_names, config_cls):
    model = build(tiny_clip_path, config_cls, class_names, n_ctx=2, **depths(config_cls, 1))
    prompts = model.get_base_model().tokenize(class_names)
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    expected = tokenizer([f"a photo of a {c}." for c in class_names], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(prompts.input_ids, expected)  # [SOS] a photo of a {class} . [EOS]: "of a" stays
    assert prompts.slot_index.tolist() == [[1, 2]] * len(class_names)  # only "a photo" is learned
    ctx = next(p for n, p in model.named_parameters() if n.endswith("embeddings.maple_ctx.default") or "ivlp_ctx" in n)
    word_embeddings = model.get_base_model().clip.text_model.embeddings.base_layer.token_embedding.weight
    torch.testing.assert_close(ctx.detach(), word_embeddings[expected[0, 1:3]], atol=0, rtol=0)


def depths(config_cls, depth: int) -> dict:
    if config_cls is MaPLeConfig:
        return {"depth": depth}
    return {"text_depth": depth, "vision_depth": depth}


def test_ivlp_text_only_at_init_is_zero_shot_clip(tiny_clip_path, class_names, pixel_values, reference_logits):
    model = build(tiny_clip_path, IVLPConfig, class_names, n_ctx=2, text_depth=1, vision_tokens=0).eval()
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(logits, reference_logits[0], atol=1e-5, rtol=0)


def test_deep_text_prompts_replace_the_context_slots(tiny_clip_path, class_names):
    model = build(tiny_clip_path, IVLPConfig, class_names, n_ctx=2, text_depth=2, vision_depth=2)
    text = model.get_base_model().clip.text_model
    seen = {}
    text.encoder.layers[0].register_forward_hook(record(seen, "out0", "output"))
    text.encoder.layers[1].base_layer.register_forward_hook(record(seen, "in1"))
    with torch.no_grad():
        model.get_base_model().encode_text(class_names)
    prompts = text.encoder.layers[1].ivlp_text_prompts["default"]
    length = model.get_base_model().tokenize(class_names).input_ids.shape[1]
    assert seen["in1"].shape[1] == length  # replaced, not inserted
    torch.testing.assert_close(seen["in1"][:, 1:3], prompts.expand(len(class_names), -1, -1), atol=0, rtol=0)
    torch.testing.assert_close(seen["in1"][:, 3:], seen["out0"][:, 3:], atol=0, rtol=0)
    torch.testing.assert_close(seen["in1"][:, :1], seen["out0"][:, :1], atol=0, rtol=0)


def test_ivlp_towers_are_independent(tiny_clip_path, class_names, pixel_values):
    model = build(tiny_clip_path, IVLPConfig, class_names, text_depth=2, vision_depth=2).eval()
    with torch.no_grad():
        before = model(pixel_values=pixel_values)
        for name, param in trainable(model).items():
            if "vision" in name:  # random: a constant shift would vanish in the LayerNorms
                param.add_(torch.randn_like(param))
        after = model(pixel_values=pixel_values)
    torch.testing.assert_close(after.text_embeds, before.text_embeds, atol=0, rtol=0)
    assert not torch.allclose(after.image_embeds, before.image_embeds, atol=1e-4)


# ---------------------------------------------------------------------------------------------- MaPLe
@pytest.fixture(scope="module")
def three_layer_path(tmp_path_factory) -> str:
    return build_tiny_clip(
        tmp_path_factory.mktemp("clip3"),
        seed=2,
        text_config={"num_hidden_layers": 3},
        vision_config={"num_hidden_layers": 3},
    )


def maple_parts(model):
    clip = model.get_base_model().clip
    text_embeddings, vision_embeddings = clip.text_model.embeddings, clip.vision_model.embeddings
    deep = [(clip.text_model.encoder.layers[i], clip.vision_model.encoder.layers[i]) for i in range(1, 3)]
    return (text_embeddings, vision_embeddings), deep


def test_maple_vision_prompts_are_linear_maps_of_the_text_prompts(three_layer_path, class_names, pixel_values):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3)
    perturb(model)
    (text0, vision0), deep = maple_parts(model)
    seen = {}
    clip = model.get_base_model().clip
    clip.vision_model.pre_layrnorm.register_forward_hook(record(seen, 0))
    for i, (_, vision) in enumerate(deep, start=1):
        vision.base_layer.register_forward_hook(record(seen, i))
    with torch.no_grad():
        model(pixel_values=pixel_values)
        proj = vision0.maple_vision_proj["default"]
        expected = {0: proj(text0.maple_ctx["default"])}
        for i, (text, vision) in enumerate(deep, start=1):
            expected[i] = vision.maple_vision_proj["default"](text.maple_text_prompts["default"])
    for i in range(3):
        assert seen[i].shape[1] == N_TOKENS + 2
        torch.testing.assert_close(seen[i][:, -2:], expected[i].expand(4, -1, -1), atol=1e-6, rtol=0)


def test_maple_deep_maps_start_as_copies_of_one_linear(three_layer_path, class_names):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3)
    (_, vision0), deep = maple_parts(model)
    first, second = (vision.maple_vision_proj["default"] for _, vision in deep)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert first.weight is not second.weight  # copies, trained independently
    assert not torch.equal(vision0.maple_vision_proj["default"].weight, first.weight)  # proj is its own Linear


def test_maple_text_prompts_get_gradients_through_the_vision_tower(three_layer_path, class_names, pixel_values):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3).train()
    model(pixel_values=pixel_values).image_embeds.sum().backward()  # image side only: no text pass in the loss
    grads = {name: p.grad for name, p in trainable(model).items()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), sorted(
        n for n, g in grads.items() if g is None
    )


def test_maple_text_parameters_are_registered_and_saved_once(three_layer_path, class_names, tmp_path):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3)
    names = [name for name, _ in model.named_parameters() if "maple_ctx" in name or "maple_text_prompts" in name]
    assert all(".text_model." in name for name in names) and len(names) == 3
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sum("maple_ctx" in k or "maple_text_prompts" in k for k in saved) == 3
    assert sum("maple_vision_proj" in k for k in saved) == 6  # weight and bias of proj, F_1 and F_2


def test_maple_copy_couples_to_its_own_text_layers(three_layer_path, class_names, pixel_values):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3).eval()
    duplicate = copy.deepcopy(model)
    (text0, vision0), _ = maple_parts(duplicate)
    assert vision0.text_source is text0
    with torch.no_grad():
        torch.testing.assert_close(
            duplicate(pixel_values=pixel_values).logits, model(pixel_values=pixel_values).logits
        )
        text0.maple_ctx["default"].add_(1.0)
        assert not torch.allclose(
            duplicate(pixel_values=pixel_values).image_embeds, model(pixel_values=pixel_values).image_embeds
        )


def test_maple_second_adapter_is_coupled_and_switchable(three_layer_path, class_names, pixel_values):
    model = build(three_layer_path, MaPLeConfig, class_names, depth=3).eval()
    model.add_adapter("other", MaPLeConfig(class_names=class_names, depth=3, ctx_init=None))
    (text0, vision0), deep = maple_parts(model)
    assert sorted(vision0.maple_vision_proj) == ["default", "other"]
    assert all(vision.text_source is text for text, vision in deep)
    with torch.no_grad():
        first = model(pixel_values=pixel_values).image_embeds
        model.set_adapter("other")
        second = model(pixel_values=pixel_values).image_embeds
    assert not torch.allclose(first, second, atol=1e-4)
    assert all("other" in name for name in trainable(model))
    model.set_adapter("default")
    model.delete_adapter("other")
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).image_embeds, first, atol=0, rtol=0)


def test_maple_vision_layers_need_their_text_layers(tiny_clip_path, class_names):
    targets = ["text_model.embeddings", "vision_model.embeddings", "vision_model.encoder.layers.1"]
    with pytest.raises(ValueError, match="not a MaPLe text layer"):
        build(tiny_clip_path, MaPLeConfig, class_names, depth=2, target_modules=targets)
    assert isinstance(
        build(tiny_clip_path, MaPLeConfig, class_names, depth=2).get_base_model().clip.vision_model.embeddings,
        MaPLeVisionLayer,
    )


def test_maple_trains_under_ddp_without_unused_parameters(three_layer_path, tmp_path):
    # in a fresh process that exits without destructors: see the script's docstring
    script = Path(__file__).with_name("_maple_ddp_one_process.py")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    args = [sys.executable, str(script), three_layer_path, str(tmp_path / "store")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------- PromptSRC
TEMPLATES = ["a photo of a {}.", "art of a {}.", "a {} in a video game."]


def test_promptsrc_losses_equal_a_hand_computation(tiny_clip_path, class_names, pixel_values):
    model = build(
        tiny_clip_path, PromptSRCConfig, class_names, text_depth=2, vision_depth=2, teacher_templates=TEMPLATES
    )
    perturb(model)
    model.train()
    out = model(pixel_values=pixel_values, labels=LABELS)

    clip = CLIPModel.from_pretrained(tiny_clip_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    with torch.no_grad():
        per_template = [
            clip.get_text_features(
                **tokenizer([t.format(c) for c in class_names], padding=True, return_tensors="pt")
            ).pooler_output
            for t in TEMPLATES
        ]
        text_target = F.normalize(torch.stack(per_template).mean(0), dim=-1)  # mean of un-normalised features
        image_target = F.normalize(clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
    text, image, logits = out.text_embeds.detach(), out.image_embeds.detach(), out.logits.detach()
    zero_shot = clip.logit_scale.exp() * image_target @ text_target.t()
    p_zero_shot = zero_shot.softmax(-1)
    kl = (p_zero_shot * (p_zero_shot.log() - logits.log_softmax(-1))).sum() / logits.numel()
    expected = {
        "src_text": 25.0 * (text - text_target).abs().mean(),
        "src_image": 10.0 * (image - image_target).abs().mean(),
        "src_logits": kl,
    }
    assert set(out.losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(out.losses[name].detach(), value, atol=1e-5, rtol=1e-5)
        assert out.losses[name].requires_grad


def test_promptsrc_teacher_features_are_encoded_once(tiny_clip_path, class_names, pixel_values):
    model = build(tiny_clip_path, PromptSRCConfig, class_names, text_depth=2, vision_depth=2).train()
    calls = []
    model.get_base_model().clip.text_model.final_layer_norm.register_forward_hook(lambda *args: calls.append(1))
    model(pixel_values=pixel_values, labels=LABELS)
    assert len(calls) == 2  # the class prompts, and all 60 x 5 teacher prompts in one frozen pass
    model(pixel_values=pixel_values, labels=LABELS)
    assert len(calls) == 3
    model.eval()
    with torch.no_grad():
        assert model(pixel_values=pixel_values).losses == {}  # training only


def test_promptsrc_needs_pixels_in_training(tiny_clip_path, class_names):
    model = build(tiny_clip_path, PromptSRCConfig, class_names, text_depth=2, vision_depth=2).train()
    with pytest.raises(ValueError, match="pixel_values"):
        model(image_embeds=torch.randn(2, 24), labels=torch.tensor([0, 1]))


def test_promptsrc_defaults_and_validation(class_names):
    config = PromptSRCConfig(class_names=class_names)
    assert (config.n_ctx, config.vision_tokens, config.text_depth, config.vision_depth) == (4, 4, 9, 9)
    assert (config.text_loss_weight, config.image_loss_weight, config.ctx_init) == (25.0, 10.0, "a photo of a")
    assert len(config.templates()) == 60 and len(set(config.templates())) == 60
    with pytest.raises(ValueError, match="teacher_templates"):
        PromptSRCConfig(class_names=class_names, teacher_templates=["a photo"])
    with pytest.raises(ValueError, match="image_loss_weight"):
        PromptSRCConfig(class_names=class_names, image_loss_weight=-1.0)


# ---------------------------------------------------------------------------------------------- VPT text side
def test_vpt_encodes_the_class_template_once(tiny_clip_path, class_names, pixel_values):
    model = build(tiny_clip_path, VPTConfig, class_names, deep=True).train()
    calls = []
    model.get_base_model().clip.text_model.final_layer_norm.register_forward_hook(lambda *args: calls.append(1))
    out = model(pixel_values=pixel_values, labels=LABELS)
    model(pixel_values=pixel_values, labels=LABELS)
    model.eval()
    with torch.no_grad():
        model(pixel_values=pixel_values)
    assert len(calls) == 1
    expected = model.get_base_model().zero_shot_text_features(class_names, "a photo of a {}.")
    torch.testing.assert_close(out.text_embeds, expected, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------- GPA
def test_gpa_weights_match_promptsrc():
    weights = gpa_weights(20, mean=15, std=1)
    assert weights.shape == (20,) and abs(weights.sum() - 1) < 1e-12
    expected = [0.004, 0.054, 0.242, 0.399, 0.242, 0.054, 0.004]  # epochs 12..18 (METHODS.md §5e)
    assert weights[11:18].round(3).tolist() == expected
    with pytest.raises(ValueError, match="num_epochs"):
        gpa_weights(0)


class ImageDataset(torch.utils.data.Dataset):
    def __init__(self, pixel_values, labels):
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


class RecordEpochs(TrainerCallback):
    def __init__(self, stop_after: int | None = None):
        self.states, self.stop_after = [], stop_after

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.states.append({n: p.detach().clone() for n, p in trainable(model).items()})
        if self.stop_after is not None and len(self.states) == self.stop_after:
            control.should_training_stop = True


def train_with_gpa(path, class_names, pixel_values, output_dir, callbacks, resume=None):
    # GPA only sees the trainable tensors, so any method serves; IVLP's text-only prompts are the cheapest
    model = build(path, IVLPConfig, class_names, n_ctx=2, text_depth=2, vision_tokens=0)
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=3,
        per_device_train_batch_size=4,
        learning_rate=0.5,
        lr_scheduler_type="constant",
        save_strategy="epoch",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        label_names=["labels"],
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    dataset = ImageDataset(pixel_values, LABELS)
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, callbacks=[GPACallback(mean=2.0, std=1.0), *callbacks]
    )
    trainer.train(resume_from_checkpoint=resume)
    return model


def test_gpa_callback_leaves_the_gaussian_average_of_the_epochs(tiny_clip_path, class_names, pixel_values, tmp_path):
    recorder = RecordEpochs()
    model = train_with_gpa(tiny_clip_path, class_names, pixel_values, tmp_path / "full", [recorder])
    weights = gpa_weights(3, mean=2.0, std=1.0)
    assert len(recorder.states) == 3 and not torch.equal(
        recorder.states[0][next(iter(recorder.states[0]))], recorder.states[2][next(iter(recorder.states[2]))]
    )
    for name, param in trainable(model).items():
        expected = sum(float(w) * state[name] for w, state in zip(weights, recorder.states, strict=True))
        torch.testing.assert_close(param.detach(), expected, atol=1e-6, rtol=0)

    # stopped after epoch 2 and resumed from its checkpoint: the same aggregate as the uninterrupted run
    train_with_gpa(tiny_clip_path, class_names, pixel_values, tmp_path / "split", [RecordEpochs(stop_after=2)])
    resumed = train_with_gpa(
        tiny_clip_path,
        class_names,
        pixel_values,
        tmp_path / "split",
        [],
        resume=str(tmp_path / "split" / "checkpoint-2"),
    )
    for name, param in trainable(resumed).items():
        torch.testing.assert_close(param.detach(), trainable(model)[name].detach(), atol=1e-6, rtol=0)
