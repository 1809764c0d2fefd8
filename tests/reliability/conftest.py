"""Fixtures of the reliability tests (the tiny CLIP comes from ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from ._cases import build_model


@pytest.fixture
def make_model(tiny_clip_path):
    """``make_model("coop", seed=0, **config_overrides)``: a fresh PeftModel of that method on the tiny CLIP."""

    def build(key: str = "coop", seed: int = 0, **overrides):
        return build_model(key, tiny_clip_path, seed, **overrides)

    return build
