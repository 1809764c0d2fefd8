"""Backbone text rules: looked up from the model's config, refused with a clear error when unknown."""

from __future__ import annotations

import pytest
from torch import nn

from peft_dor.prompting import TextRules, text_rules


def test_clip_rules_are_causal_eos_pooled_and_padded_to_the_longest(tiny_clip):
    rules = text_rules(tiny_clip)
    assert rules == TextRules(causal=True, pooling="eos", fixed_length=None)


def test_an_unknown_backbone_is_refused_naming_its_model_type():
    model = nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "blip"})()
    with pytest.raises(TypeError, match=r"model_type='blip'.*supported: \['clip', 'siglip'\]"):
        text_rules(model)


def test_padding_to_the_longest_prompt_is_refused_without_causal_attention():
    with pytest.raises(ValueError, match="fixed_length"):
        TextRules(causal=False, pooling="eos", fixed_length=None)
