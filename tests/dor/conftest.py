"""Fixtures of the DOR tests: CoOp on the tiny CLIP and a small outlier vocabulary."""

from __future__ import annotations

import pytest

from peft_dor.testing import TINY_WORDS

from ..method_cases import CLASS_NAMES

# The tiny tokenizer's words and a few phrases, plus spellings of class names that must never enter a pool.
VOCABULARY = [word for word in TINY_WORDS if word not in CLASS_NAMES] + [
    "red car",
    "blue boat",
    "green tree",
    "CAT",
    "Dog",
    "horse_",
    "Bird-",
    "sea ship",
]


@pytest.fixture
def make_coop(tiny_clip_path):
    """Build a PeftModel on a fresh tiny CLIP: ``make_coop(ctx_init="a photo of a")`` (CoOp), or another method with
    ``make_coop(method="VPTConfig")``."""
    from peft import get_peft_model
    from transformers import CLIPModel

    import peft_dor  # noqa: F401  (registers the methods)

    def build(class_names=CLASS_NAMES, method="CoOpConfig", **config):
        clip = CLIPModel.from_pretrained(tiny_clip_path).eval()
        return get_peft_model(clip, getattr(peft_dor, method)(class_names=list(class_names), **config))

    return build


@pytest.fixture
def vocabulary() -> list[str]:
    return list(VOCABULARY)
