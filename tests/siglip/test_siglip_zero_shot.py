"""SigLIP through the prompt classifier: CoOp at its init phrase is plain transformers' zero-shot SigLIP.

The reference is computed with nothing of peft-dor: the tokenizer with ``padding="max_length"`` (SigLIP's
pre-training, no attention mask), ``get_text_features`` / ``get_image_features``, then
``logit_scale.exp() * cos + logit_bias``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel, get_peft_model
from transformers import AutoTokenizer, SiglipModel

from peft_dor import CoOpConfig
from peft_dor.prompting import backbone, text_rules

from ..method_cases import CLASS_NAMES

TEMPLATE = "a photo of a {}."


@torch.no_grad()
def plain_siglip_logits(path: str, pixel_values: torch.Tensor, names=CLASS_NAMES, template=TEMPLATE):
    siglip = SiglipModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer([template.format(name) for name in names], padding="max_length", return_tensors="pt")
    text = siglip.get_text_features(input_ids=batch["input_ids"]).pooler_output
    image = siglip.get_image_features(pixel_values=pixel_values).pooler_output
    cos = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
    return siglip.logit_scale.exp() * cos + siglip.logit_bias


def coop_at_init(path: str):
    config = CoOpConfig(class_names=CLASS_NAMES, ctx_init="a photo of a", template=TEMPLATE)
    return get_peft_model(SiglipModel.from_pretrained(path).eval(), config).eval()


def test_siglip_rules_are_read_from_the_config(tiny_siglip_path):
    siglip = SiglipModel.from_pretrained(tiny_siglip_path)
    rules = text_rules(siglip)
    expected = (False, "last", 64, "text_model.head")
    assert (rules.causal, rules.pooling, rules.fixed_length, rules.projection) == expected
    assert backbone(siglip).logit_bias == "logit_bias" and backbone(siglip).name == "SigLIP"


def test_the_tiny_tokenizer_has_no_bos_and_pads_with_eos(tiny_siglip_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_siglip_path)
    assert type(tokenizer).__name__ == "SiglipTokenizer"
    assert tokenizer.bos_token_id is None and tokenizer.pad_token_id == tokenizer.eos_token_id


def test_coop_at_its_init_phrase_gives_plain_zero_shot_siglip(tiny_siglip_path, pixel_values):
    model = coop_at_init(tiny_siglip_path)
    expected = plain_siglip_logits(tiny_siglip_path, pixel_values)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    # the bias is part of it: without it the logits would be 2.5 higher
    assert float(model.get_base_model().clip.logit_bias) == pytest.approx(-2.5)


def test_prompts_are_padded_to_the_fixed_length_without_bos(tiny_siglip_path):
    model = coop_at_init(tiny_siglip_path)
    wrapper = model.get_base_model()
    tokenizer = AutoTokenizer.from_pretrained(tiny_siglip_path)
    prompts = wrapper.tokenize(CLASS_NAMES)
    expected = tokenizer([TEMPLATE.format(name) for name in CLASS_NAMES], padding="max_length")["input_ids"]
    assert prompts.input_ids.tolist() == expected
    # piece by piece equals the joined text for names of several pieces too ("_" is a space)
    odd = ["sea_lion", "zebra", "Red Fox"]
    joined = tokenizer([TEMPLATE.format(name.replace("_", " ")) for name in odd], padding="max_length")["input_ids"]
    assert wrapper.tokenize(odd).input_ids.tolist() == joined
    assert prompts.slot_index[0].tolist() == [0, 1, 2, 3]  # no BOS: the context starts at position 0
    assert prompts.select_rows(torch.tensor([1, 0])).input_ids.shape == (2, 64)
    frozen = wrapper.frozen_text_features(CLASS_NAMES[::-1], TEMPLATE, cache=None)
    torch.testing.assert_close(frozen, wrapper.zero_shot_text_features().flip(0), atol=1e-6, rtol=0)


def test_disable_adapter_gives_the_base_model_and_save_reload_is_bit_identical(
    tiny_siglip_path, pixel_values, tmp_path
):
    model = coop_at_init(tiny_siglip_path)
    with torch.no_grad():
        ctx = model.get_base_model().clip.text_model.embeddings.coop_ctx["default"]
        ctx.add_(torch.randn(ctx.shape, generator=torch.Generator().manual_seed(1)))  # not constant: LayerNorm
        prompted = model(pixel_values=pixel_values).logits
        with model.disable_adapter():
            base = model(pixel_values=pixel_values).logits
    torch.testing.assert_close(base, plain_siglip_logits(tiny_siglip_path, pixel_values), atol=1e-5, rtol=0)
    assert not torch.allclose(prompted, base, atol=1e-3)
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(SiglipModel.from_pretrained(tiny_siglip_path).eval(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixel_values).logits, prompted, atol=0, rtol=0)
    assert type(reloaded.unload()) is SiglipModel


def test_siglip2_is_refused_naming_the_supported_backbones():
    from transformers import Siglip2Config, Siglip2Model

    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
    siglip2 = Siglip2Model(Siglip2Config(text_config=dict(tower, vocab_size=100), vision_config=tower))
    with pytest.raises(TypeError, match=r"model_type='siglip2'.*CLIPModel.*SiglipModel"):
        get_peft_model(siglip2, CoOpConfig(class_names=CLASS_NAMES, tokenizer_name_or_path="unused"))


def test_dor_outlier_features_are_plain_siglip_text_features(tiny_siglip_path):
    from peft_dor.dor.outliers import encode_zero_shot

    model = coop_at_init(tiny_siglip_path)
    terms = ["lamp", "chair", "sea lion", "zebra", "kite"]  # one-piece words and words spelled out by letters
    features, kept = encode_zero_shot(model.get_base_model(), terms, TEMPLATE, batch_size=2, progress=False)
    assert kept.all()
    siglip = SiglipModel.from_pretrained(tiny_siglip_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_siglip_path)
    batch = tokenizer([TEMPLATE.format(term) for term in terms], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        expected = F.normalize(siglip.get_text_features(input_ids=batch["input_ids"]).pooler_output, dim=-1)
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)


def test_bad_pixel_values_name_the_siglip_image_processor(tiny_siglip_path):
    model = coop_at_init(tiny_siglip_path)
    with pytest.raises(ValueError, match=r"`pixel_values` .*channels last.*SigLIP image processor"):
        model(pixel_values=torch.rand(2, 32, 32, 3))
