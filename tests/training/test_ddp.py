"""DORTrainer under 2-process DDP on CPU (gloo): same outliers and same adapter on both ranks.

The run is ``_ddp_train.py``'s :func:`main`, which the suite's one torchrun launch (the ``ddp_launch`` fixture) runs
on both ranks; ``tests/examples`` keeps the ``accelerate launch`` path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file


@pytest.mark.slow
def test_two_process_ddp_draws_the_same_outliers_and_ends_with_the_same_adapter(ddp_launch):
    tmp_path = ddp_launch / "train"
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
