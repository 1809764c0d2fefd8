"""Shared fixtures: a tiny random CLIP and its tokenizer, built offline once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Tests never touch the network: the Hub and datasets are forced offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

from .method_cases import CLASS_NAMES  # noqa: E402  (after the offline switches above)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> str:
    """Directory holding a tiny CLIPModel, CLIPTokenizer and image processor (seed 0)."""
    from peft_dor.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture(scope="session")
def tiny_siglip_path(tmp_path_factory) -> str:
    """Directory holding a tiny SiglipModel, SiglipTokenizer (SentencePiece, trained on the spot) and image
    processor (seed 0)."""
    pytest.importorskip("sentencepiece", reason="the tiny SigLIP's tokenizer needs `pip install sentencepiece`")
    from peft_dor.testing import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"), seed=0)


@pytest.fixture
def tiny_clip(tiny_clip_path):
    """A fresh tiny CLIPModel in eval mode (float32)."""
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(tiny_clip_path).eval()


@pytest.fixture
def class_names() -> list[str]:
    return list(CLASS_NAMES)


@pytest.fixture
def pixel_values() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=generator)


@pytest.fixture(scope="session")
def ddp_launch(tiny_clip_path, tmp_path_factory) -> Path:
    """The folder of the suite's one 2-process torchrun (CPU, gloo) of ``tests/reliability/_ddp_all_methods.py``:
    every method's few DDP steps, ProGrad's projected step (``prograd/``) and the training run (``train/``). One
    launch for all the multi-process checks, because each launch costs ~10 s of imports per rank."""
    out_dir = tmp_path_factory.mktemp("ddp")
    root = Path(__file__).parents[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    script = root / "tests" / "reliability" / "_ddp_all_methods.py"
    process = subprocess.Popen(
        [*command, str(script), tiny_clip_path, str(out_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]
    return out_dir
