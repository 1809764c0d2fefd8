"""Fixtures of the world tests: the shipped world CLIP and its world."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world_path() -> str:
    from peft_dor.world import world_clip_path

    return world_clip_path()


@pytest.fixture(scope="session")
def world(world_path):
    from peft_dor.world import load_world

    return load_world(world_path)
