"""Every fast path equals the plain path it replaces (float32, 1e-5).

* training from cached image features (``image_embeds=``) vs from pixels, for CoOp and the image-conditioned CoCoOp;
* chunked and checkpointed text encoding vs one plain pass (logits, DOR's outlier features and gradients);
* the evaluation cache of class text features vs a fresh encode, before and after a prompt update;
* ``torch.compile``d text layers vs eager;
* prompts padded to the longest prompt vs CLIP's 77 tokens, for classes and DOR outliers, prompted and zero-shot,
  and DOR's precomputed outlier targets vs targets recomputed by frozen CLIP every step (the official code's way).

The feature cache's own behaviour (views, keys, the collator) is tested in ``tests/data/test_feature_cache.py``.
"""

from __future__ import annotations

import os

import pytest
import torch
from peft import get_peft_model
from transformers import AutoTokenizer, CLIPModel

import peft_dor
from peft_dor.prompting import TextPromptContext, TextTower, TokenizedPrompts

OUTLIERS = ["lamp", "tree", "rose", "red river", "blue lake mountain"]
ATOL = 1e-5


def make(tiny_clip_path, class_names, config_cls=peft_dor.CoOpConfig, **kwargs):
    torch.manual_seed(0)
    kwargs = {"n_ctx": 4, **kwargs} if config_cls is peft_dor.CoOpConfig else kwargs
    return get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), config_cls(class_names=class_names, **kwargs))


def context_param(model) -> torch.nn.Parameter:
    layer = model.get_base_model().clip.text_model.embeddings
    return next(p for name, p in layer.named_parameters() if p.requires_grad and "ctx" in name)


def loss_and_grads(model, **inputs):
    out = model(**inputs)
    objective = out.loss + (out.extra_text_embeds.sum() if out.extra_text_embeds is not None else 0)
    params = [p for p in model.parameters() if p.requires_grad]
    return out, torch.autograd.grad(objective, params)


def assert_same(fast, plain, grads_fast=(), grads_plain=()):
    torch.testing.assert_close(fast.logits, plain.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.loss, plain.loss, atol=ATOL, rtol=0)
    if plain.extra_text_embeds is not None:
        torch.testing.assert_close(fast.extra_text_embeds, plain.extra_text_embeds, atol=ATOL, rtol=0)
    for a, b in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("config_cls", [peft_dor.CoOpConfig, peft_dor.CoCoOpConfig], ids=["coop", "cocoop"])
def test_training_from_image_features_equals_training_from_pixels(
    tiny_clip_path, class_names, pixel_values, config_cls
):
    # CoCoOp conditions its prompts on the image *features*; the vision tower itself is untouched, so cached
    # features are exact for it too.
    model = make(tiny_clip_path, class_names, config_cls)
    model.train()
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        embeds = model.get_base_model().clip.get_image_features(pixel_values=pixel_values).pooler_output
    plain, grads_plain = loss_and_grads(model, pixel_values=pixel_values, labels=labels, extra_names=OUTLIERS[:2])
    fast, grads_fast = loss_and_grads(model, image_embeds=embeds, labels=labels, extra_names=OUTLIERS[:2])
    assert_same(fast, plain, grads_fast, grads_plain)


@pytest.mark.parametrize(
    ("config_cls", "chunk", "checkpointing"),
    [
        (peft_dor.CoOpConfig, 2, False),
        (peft_dor.CoOpConfig, 3, True),
        (peft_dor.CoOpConfig, None, True),
        (peft_dor.CoCoOpConfig, 4, True),
    ],
    ids=["coop-chunked", "coop-chunked-checkpointed", "coop-checkpointed", "cocoop-chunked-checkpointed"],
)
def test_chunked_and_checkpointed_text_equals_one_plain_pass(
    tiny_clip_path, class_names, pixel_values, config_cls, chunk, checkpointing
):
    model = make(tiny_clip_path, class_names, config_cls)
    model.train()
    inputs = {"pixel_values": pixel_values[:2], "labels": torch.tensor([0, 4]), "extra_names": OUTLIERS}
    plain, grads_plain = loss_and_grads(model, **inputs)
    wrapper = model.get_base_model()
    wrapper.text_chunk_size, wrapper.text_checkpointing = chunk, checkpointing
    fast, grads_fast = loss_and_grads(model, **inputs)
    assert_same(fast, plain, grads_fast, grads_plain)


def test_evaluation_cache_equals_a_fresh_encode_before_and_after_a_prompt_update(
    tiny_clip_path, class_names, pixel_values
):
    model = make(tiny_clip_path, class_names)
    wrapper = model.get_base_model()
    ctx = context_param(model)
    optimizer = torch.optim.SGD([ctx], lr=1.0)
    for _ in range(2):
        model.eval()
        with torch.no_grad():
            model(pixel_values=pixel_values)  # fills the cache
            cached = model(pixel_values=pixel_values[:3]).logits
            assert wrapper._class_feature_cache is not None
            fresh_text = wrapper.encode_text(class_names)
            image = wrapper.encode_image(pixel_values[:3])
        torch.testing.assert_close(cached, wrapper.clip.logit_scale.exp() * image @ fresh_text.t(), atol=ATOL, rtol=0)
        # a training step changes the prompts: the next evaluation must not serve stale features
        model.train()
        out = model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 3]))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        after = model(pixel_values=pixel_values[:3]).logits
    assert not torch.allclose(after, cached)


def _compile_supported() -> bool:
    try:
        torch.compile(lambda x: x + 1, backend="eager")(torch.ones(1))
    except Exception:  # noqa: BLE001 - any failure means this build cannot compile
        return False
    return True


COMPILE_BACKENDS = ["eager"]
if os.environ.get("PEFT_DOR_TEST_INDUCTOR") == "1":
    COMPILE_BACKENDS.append("inductor")  # ~2 minutes of C++ compilation on 2 CPU cores


@pytest.mark.skipif(not _compile_supported(), reason="torch.compile is not supported on this build")
@pytest.mark.parametrize("backend", COMPILE_BACKENDS)
def test_compiled_text_tower_equals_eager(tiny_clip_path, class_names, pixel_values, backend):
    """``eager`` runs TorchDynamo's graph capture (fast); set PEFT_DOR_TEST_INDUCTOR=1 to also run Inductor."""
    torch._dynamo.reset()
    model = make(tiny_clip_path, class_names)
    model.train()
    inputs = {"pixel_values": pixel_values, "labels": torch.tensor([0, 1, 2, 3]), "extra_names": OUTLIERS[:2]}
    plain, grads_plain = loss_and_grads(model, **inputs)
    model.get_base_model().compile_text_tower(backend=backend, dynamic=True)
    fast, grads_fast = loss_and_grads(model, **inputs)
    assert_same(fast, plain, grads_fast, grads_plain)
    # the state dict keeps CLIP's names: saving and loading are unaffected by compilation
    assert not any("_orig_mod" in key for key in model.state_dict())
    torch._dynamo.reset()


def pad_to(prompts: TokenizedPrompts, length: int, pad_id: int) -> TokenizedPrompts:
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    ids[:, : prompts.input_ids.shape[1]] = prompts.input_ids
    return TokenizedPrompts(ids, prompts.eos_index, prompts.slot_index)


def test_longest_padding_equals_77_padding_for_class_and_outlier_prompts(tiny_clip_path, class_names, pixel_values):
    model = make(tiny_clip_path, class_names)
    model.train()
    wrapper = model.get_base_model()
    out = model(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 3]), extra_names=OUTLIERS)
    names = class_names + OUTLIERS
    prompts = wrapper.tokenize(names)
    assert prompts.input_ids.shape[1] < 77
    padded = pad_to(prompts, 77, wrapper.prompt_tokenizer.pad_id)
    context = TextPromptContext(padded, wrapper._class_index(names), None, names)
    reference = torch.nn.functional.normalize(TextTower(wrapper.clip)(context), dim=-1)
    torch.testing.assert_close(out.text_embeds, reference[: len(class_names)], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.extra_text_embeds, reference[len(class_names) :], atol=ATOL, rtol=0)


def hf_zero_shot_77(tiny_clip_path, names, template="a photo of a {}."):
    """Frozen CLIP through transformers' own text path, padded to 77 like the official code (the reference)."""
    clip = CLIPModel.from_pretrained(tiny_clip_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_path)
    ids = tokenizer([template.format(n) for n in names], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        features = clip.get_text_features(input_ids=ids["input_ids"]).pooler_output
    return torch.nn.functional.normalize(features, dim=-1)


def test_zero_shot_outlier_features_at_longest_padding_equal_transformers_at_77(tiny_clip_path, class_names):
    model = make(tiny_clip_path, class_names)
    zero_shot = model.get_base_model().zero_shot_text_features(OUTLIERS, "a photo of a {}.")
    torch.testing.assert_close(zero_shot, hf_zero_shot_77(tiny_clip_path, OUTLIERS), atol=ATOL, rtol=0)


def test_dor_precomputed_targets_equal_targets_recomputed_every_step(
    tiny_clip_path, class_names, pixel_values, tmp_path
):
    from peft_dor import DORConfig, DORRegularizer

    vocabulary = ["lamp", "tree", "rose", "river", "chair", "cup", "red lake", "blue kite"]
    model = make(tiny_clip_path, class_names)
    model.train()
    dor = DORRegularizer(
        DORConfig(vocabulary=vocabulary, pool_size=6, num_outliers=3, seed=0, cache_dir=str(tmp_path))
    )
    dor.build_pool(model, progress=False)
    labels = torch.tensor([0, 1, 2, 3])
    for step in range(3):
        draw = dor.draw(step=step)
        out = model(pixel_values=pixel_values, labels=labels, **draw.model_kwargs())
        # the official code: re-tokenise the drawn words at 77 tokens and encode them with frozen CLIP every step
        targets = hf_zero_shot_77(tiny_clip_path, draw.names)
        torch.testing.assert_close(draw.targets, targets, atol=ATOL, rtol=0)
        cos = torch.nn.functional.cosine_similarity(out.extra_text_embeds, targets, dim=-1, eps=1e-7)
        torch.testing.assert_close(dor.loss(out, draw), 1 - cos.mean(), atol=ATOL, rtol=0)
