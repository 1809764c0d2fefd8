"""Fixtures for the example scripts (thin wrappers of the ``peft-dor`` command): one run of the generated-data check
(``--dataset demo``: the whole training path on generated images and a small fitted CLIP)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..cli.conftest import command_env

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "train.py"
#: the generated-data run, shortened for the tests (same pipeline, fewer steps)
DEMO_ARGS = ["--dataset", "demo", "--num_train_epochs", "2", "--dor_pool_size", "12"]


#: the environment of a fresh process: offline, private caches, this checkout first
script_env = command_env


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """A private cache (tiny CLIP, demo images, datasets) shared by the demo runs of this session."""
    return tmp_path_factory.mktemp("peft-dor-cache")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_cache):
    """``python examples/train.py --dataset demo`` (shortened) in a fresh process: its output directory."""
    out = tmp_path_factory.mktemp("demo") / "one-process"
    cmd = [sys.executable, str(TRAIN), *DEMO_ARGS, "--output_dir", str(out)]
    proc = subprocess.run(cmd, env=script_env(demo_cache), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


from ..cli.conftest import restore_library_output  # noqa: E402, F401 - the demo runs the command in-process too
