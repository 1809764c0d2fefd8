"""Prefix sharing (``peft_dor.prompting.prefix``) gives what the full rows give, for every method and layout.

Each test runs the same model twice, ``PromptCLIP.share_text_prefix`` on and off, and compares logits, the training
loss (cross-entropy plus the method's losses) and the gradient of every trainable tensor; a spy on the split layer
shows the shared path really ran (or really did not, where nothing is shared).
"""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import AutoTokenizer, CLIPModel

from peft_dor import CoOpConfig
from peft_dor.prompting import PromptTokenizer, TextPromptContext, TextRules, TextTower, prefix

from ..method_cases import CASES, CLASS_NAMES

OUTLIERS = ["lamp", "chair", "kite"]
LAYOUT_CASES = [
    ("coop-middle", CoOpConfig, {"n_ctx": 4, "class_token_position": "middle"}),
    ("coop-front", CoOpConfig, {"n_ctx": 4, "class_token_position": "front"}),
    ("coop-csc", CoOpConfig, {"n_ctx": 4, "class_specific": True}),
    # CSC initialised from one phrase: every class's context is equal at first, but each has its own gradient
    ("coop-csc-phrase", CoOpConfig, {"ctx_init": "a photo of a", "class_specific": True}),
]
ALL_CASES = [(case.name, case.config_class, case.kwargs) for case in CASES] + LAYOUT_CASES
IDS = [case[0] for case in ALL_CASES]
#: cases whose class prompts share nothing beyond [SOS] (the spy must see no split)
UNSHARED = {"coop-front", "coop-csc", "coop-csc-phrase"}
#: class-specific context exists only for the classes: no outlier names through it
NO_OUTLIERS = {"coop-csc", "coop-csc-phrase"}
#: cases that also run their frozen text through the shared path (vision-only VPT has no text prompts at all)
TEXT_FROZEN = {"vpt-shallow", "vpt-deep"}


@pytest.fixture
def split_calls(monkeypatch) -> list[int]:
    """Counts calls of the split layer (one per layer per shared pass)."""
    calls = [0]
    original = prefix.split_layer

    def spy(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(prefix, "split_layer", spy)
    return calls


def build(case, path: str, class_names, dtype=torch.float32):
    _, config_cls, kwargs = case
    torch.manual_seed(0)
    clip = CLIPModel.from_pretrained(path).eval()
    model = get_peft_model(clip, config_cls(class_names=list(class_names), **kwargs))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move the prompts off their init so shared and per-class paths surely differ
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model.to(dtype)


def step(model, share: bool, pixel_values, labels, extra_names):
    """Logits, total loss and gradients of one training forward and backward with sharing ``share``."""
    model.get_base_model().share_text_prefix = share
    model.zero_grad()
    out = model(pixel_values=pixel_values, labels=labels, extra_names=extra_names or None)
    loss = out.loss + sum(out.losses.values(), torch.zeros((), dtype=out.loss.dtype))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    extra = None if out.extra_text_embeds is None else out.extra_text_embeds.detach()
    return out.logits.detach(), loss.detach(), extra, grads


def assert_same(shared, full, atol):
    for got, expected in zip(shared[:3], full[:3], strict=True):
        if expected is not None:
            torch.testing.assert_close(got, expected, atol=atol, rtol=atol)
    assert shared[3].keys() == full[3].keys() and full[3]
    for name, grad in full[3].items():
        torch.testing.assert_close(shared[3][name], grad, atol=atol, rtol=atol, msg=name)


@pytest.mark.parametrize("n_classes", [2, 5])
@pytest.mark.parametrize("case", ALL_CASES, ids=IDS)
def test_shared_prefix_equals_full_rows_in_float32(case, n_classes, tiny_clip_path, pixel_values, split_calls):
    model = build(case, tiny_clip_path, CLASS_NAMES[:n_classes])
    model.train()
    labels = torch.arange(4) % n_classes
    for extra in ([], [] if case[0] in NO_OUTLIERS else OUTLIERS):
        split_calls[0] = 0
        shared = step(model, True, pixel_values, labels, extra)
        calls = split_calls[0]
        full = step(model, False, pixel_values, labels, extra)
        assert split_calls[0] == calls  # the switch really turns the shared path off
        assert_same(shared, full, atol=1e-5)
        if case[0] in UNSHARED:
            assert calls == 0
        elif case[0] not in TEXT_FROZEN:
            assert calls > 0


@pytest.mark.parametrize("case", ALL_CASES, ids=IDS)
def test_shared_prefix_equals_full_rows_in_float64(case, tiny_clip_path, pixel_values):
    model = build(case, tiny_clip_path, CLASS_NAMES, dtype=torch.float64)
    model.train()
    extra = [] if case[0] in NO_OUTLIERS else OUTLIERS
    inputs = (pixel_values.double(), torch.tensor([0, 1, 2, 3]), extra)
    assert_same(step(model, True, *inputs), step(model, False, *inputs), atol=1e-10)


@pytest.mark.parametrize("name", ["coop", "cocoop", "maple", "tcp"])
def test_bf16_autocast_shared_prefix_is_close_to_full_rows(name, tiny_clip_path, pixel_values):
    case = next(case for case in ALL_CASES if case[0] == name)
    model = build(case, tiny_clip_path, CLASS_NAMES).eval()
    wrapper = model.get_base_model()
    logits = {}
    for share in (True, False):
        wrapper.share_text_prefix = share
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits[share] = model(pixel_values=pixel_values, extra_names=OUTLIERS).logits.float()
    scale = wrapper.clip.logit_scale.exp()
    # the matrix's bf16-vs-fp32 tolerance (transformers' CLIP tests use 3e-2 on such cosines)
    torch.testing.assert_close(logits[True] / scale, logits[False] / scale, atol=3e-2, rtol=0)


def test_names_sharing_first_tokens_share_them_too(tiny_clip_path, pixel_values, split_calls):
    names = ["red apple", "red car", "red ship"]
    model = build(("coop", CoOpConfig, {"n_ctx": 4}), tiny_clip_path, names)
    model.train()
    wrapper = model.get_base_model()
    prompts = wrapper.tokenize(names)
    # [SOS] X X X X red: the first name token is shared as well
    assert prefix.shared_prefix_length(prompts, wrapper.clip.text_model.embeddings) == 6
    assert_same(*(step(model, share, pixel_values, torch.tensor([0, 1, 2, 0]), []) for share in (True, False)), 1e-5)
    assert split_calls[0] > 0


def test_a_pass_sharing_only_sos_takes_the_full_rows(tiny_clip_path):
    model = build(
        ("coop-front", CoOpConfig, {"n_ctx": 4, "class_token_position": "front"}), tiny_clip_path, CLASS_NAMES
    )
    wrapper = model.get_base_model()
    prompts = wrapper.tokenize(CLASS_NAMES)
    assert prefix.shared_prefix_length(prompts, wrapper.clip.text_model.embeddings) == 0
    # one prompt alone shares nothing with anyone
    assert prefix.shared_prefix_length(wrapper.tokenize(["cat"]), wrapper.clip.text_model.embeddings) == 0


def test_chunked_checkpointed_and_cached_encoding_share_too(tiny_clip_path, pixel_values, split_calls):
    model = build(("coop", CoOpConfig, {"n_ctx": 4}), tiny_clip_path, CLASS_NAMES)
    model.train()
    inputs = (pixel_values, torch.tensor([0, 1, 2, 3]), OUTLIERS)
    full = step(model, False, *inputs)
    wrapper = model.get_base_model()
    wrapper.text_chunk_size, wrapper.text_checkpointing = 3, True
    split_calls[0] = 0
    assert_same(step(model, True, *inputs), full, atol=1e-5)
    assert split_calls[0] >= 2 * 3  # 8 prompts in chunks of 3: each chunk shares, each layer recomputed in backward
    model.eval()  # the eval class-feature cache holds what the shared path computed
    with torch.no_grad():
        wrapper.share_text_prefix = True
        cached = model(pixel_values=pixel_values).logits
        wrapper.share_text_prefix = False
        wrapper._class_feature_cache = None
        torch.testing.assert_close(cached, model(pixel_values=pixel_values).logits, atol=1e-5, rtol=0)


@torch.no_grad()
def test_frozen_zero_shot_features_share_the_template_prefix(tiny_clip_path, split_calls):
    model = build(("coop", CoOpConfig, {"n_ctx": 4}), tiny_clip_path, CLASS_NAMES)
    wrapper = model.get_base_model()
    shared = wrapper.frozen_text_features(CLASS_NAMES + OUTLIERS, cache=None)
    assert split_calls[0] > 0  # "[SOS] a photo of a" runs once
    wrapper.share_text_prefix = False
    torch.testing.assert_close(
        shared, wrapper.frozen_text_features(CLASS_NAMES + OUTLIERS, cache=None), atol=1e-5, rtol=0
    )


@torch.no_grad()
def test_a_non_causal_backbone_never_takes_the_shared_path(tiny_clip, split_calls):
    tower = TextTower(tiny_clip)
    tower.rules = TextRules(causal=False, pooling="eos", fixed_length=16)
    tokenizer = PromptTokenizer(AutoTokenizer.from_pretrained(tiny_clip.name_or_path), 77)
    tower(TextPromptContext(tokenizer.template_prompts(CLASS_NAMES, "a photo of a {}.")))
    assert split_calls[0] == 0


@torch.no_grad()
def test_a_forward_hook_on_a_layer_sees_the_full_rows(tiny_clip_path, split_calls):
    model = build(("coop", CoOpConfig, {"n_ctx": 4}), tiny_clip_path, CLASS_NAMES)
    wrapper = model.get_base_model()
    expected = wrapper.encode_text(CLASS_NAMES)
    calls = split_calls[0]
    seen = []
    handle = wrapper.clip.text_model.encoder.layers[1].mlp.register_forward_hook(lambda m, i, out: seen.append(out))
    torch.testing.assert_close(wrapper.encode_text(CLASS_NAMES), expected, atol=1e-5, rtol=0)
    handle.remove()
    assert split_calls[0] == calls + 1  # layer 0 still shared, layer 1 ran its full rows
    length = wrapper.tokenize(CLASS_NAMES).input_ids.shape[1]
    assert [tuple(out.shape[:2]) for out in seen] == [(len(CLASS_NAMES), length)]
