"""MaPLe under one-process DDP (gloo, find_unused_parameters=False): every prompt tensor gets a gradient in two steps.

Run in a fresh process by ``test_vision_methods.py``: freeing a DDP ``Reducer`` whose gloo group was already
destroyed can deadlock in ``~ProcessGroupGloo`` (seen once in CI, pytest hung at the end of the test), so this script
checks, prints ``ok`` and leaves through ``os._exit`` without running any destructor.

Usage: ``python _maple_ddp_one_process.py MODEL_PATH STORE_FILE``
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from peft import get_peft_model
from torch.nn.parallel import DistributedDataParallel
from transformers import CLIPModel

from peft_dor import MaPLeConfig
from peft_dor.tuners.maple import MaPLeDeepVisionLayer
from tests.method_cases import CLASS_NAMES


def main(model_path: str, store_file: str) -> None:
    torch.manual_seed(0)
    config = MaPLeConfig(class_names=list(CLASS_NAMES), depth=3)
    model = get_peft_model(CLIPModel.from_pretrained(model_path).eval(), config).train()
    assert any(isinstance(m, MaPLeDeepVisionLayer) for m in model.modules())
    prompts = {name: p for name, p in model.named_parameters() if p.requires_grad}
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    dist.init_process_group("gloo", store=dist.FileStore(store_file, 1), rank=0, world_size=1)
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.SGD(prompts.values(), lr=0.1)
    for _ in range(2):  # a parameter left without gradient makes the second step raise
        optimizer.zero_grad()
        ddp(pixel_values=pixel_values, labels=labels).loss.backward()
        missing = [name for name, p in prompts.items() if p.grad is None]
        assert not missing, missing
        optimizer.step()
    print("ok", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:3])
