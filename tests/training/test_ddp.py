"""DORTrainer under ``accelerate launch`` with 2 CPU processes (gloo): same outliers and same adapter on both ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("_ddp_train.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_draws_the_same_outliers_and_ends_with_the_same_adapter(tiny_clip_path, tmp_path):
    # `--cpu --num_processes 2` silently runs ONE process; `--multi_gpu` on a machine without GPUs runs gloo on CPU.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(SCRIPT), tiny_clip_path, str(tmp_path),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["wrapper"] == "DistributedDataParallel" and reports[0]["find_unused_parameters"] is False
    # the pool was built once (rank 0 first, rank 1 from the disk cache) and both ranks drew the same outliers
    assert len(list((tmp_path / "cache" / "dor").glob("dor-features-*.safetensors"))) == 1
    assert reports[0]["pool"] == reports[1]["pool"]
    assert reports[0]["draws"] == reports[1]["draws"]
    # 30 images, 2 ranks x 5 per batch: 3 micro-batches per rank and epoch, so with 2 accumulation steps every
    # second optimiser step has a single micro-batch; each micro-batch has its own draw
    assert [(s, m) for s, m, _ in reports[0]["draws"]] == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (3, 0)]
    assert len({tuple(names) for _, _, names in reports[0]["draws"]}) == 6
    ctx = [load_file(str(tmp_path / f"ctx-{rank}.safetensors"))["ctx"] for rank in (0, 1)]
    assert torch.equal(ctx[0], ctx[1])
    logs = reports[0]["logs"]
    assert len(logs) == 2 and all(entry["loss_dor"] > 0 for entry in logs[1:])
