"""Every method trained a few DORTrainer steps, once per method, in one process group.

``torchrun --nproc_per_node 2 _ddp_all_methods.py MODEL_DIR OUT_DIR`` trains each method with DDP (CPU, gloo) on a
global batch of :data:`GLOBAL_BATCH` images split over the ranks; called as :func:`main` without torchrun, it trains
the same global batch in one process (the reference). Either way every rank writes ``OUT_DIR/<method>-<tag>``
``.safetensors`` (its trained adapter tensors) and ``.json`` (the outliers it drew per forward), ``<tag>`` being
``rank<r>`` under torchrun and ``single`` otherwise. The dataset is exactly one global batch, so every step sees the
same images whatever the sampler's order and the DDP-averaged gradient equals the one-process gradient up to float
rounding. Depends on nothing but the libraries (no pytest).

Under torchrun the same process group then runs the other multi-process checks, so the suite pays one launch (~10 s
of imports) for all of them: ProGrad's projected step (``tests/tuners/_prograd_ddp.py``, into ``OUT_DIR/prograd``)
and the accumulating DORTrainer run (``tests/training/_ddp_train.py``, into ``OUT_DIR/train``). The session fixture
``ddp_launch`` of ``tests/conftest.py`` starts it.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file

GLOBAL_BATCH = 8
STEPS = 2


def run_method(key: str, model_dir: str, out_dir: str, world: int, tag: str) -> None:
    from tests.reliability._cases import (
        build_model,
        dor_config,
        image_rows,
        trainable_state,
        trainer_class,
        training_args,
    )

    draws: list[list] = []

    class Recording(trainer_class(key)):
        def next_draw(self):
            draw = super().next_draw()
            draws.append([self.state.global_step, draw.positions.tolist()])
            return draw

    model = build_model(key, model_dir, seed=0)
    args = training_args(
        os.path.join(out_dir, f"run-{key}-{tag}"),
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=STEPS,
        max_grad_norm=0.0,
    )
    trainer = Recording(
        model=model,
        args=args,
        train_dataset=image_rows(GLOBAL_BATCH),
        compute_metrics=None,
        dor=dor_config(key, cache_dir=os.path.join(out_dir, "cache")),
        optimizer_name="sgd",
        optimizer_kwargs={"weight_decay": 0.0},
    )
    trainer.train()
    save_file(trainable_state(model), os.path.join(out_dir, f"{key}-{tag}.safetensors"))
    report = {"draws": draws, "world_size": trainer.args.world_size, "wrapper": type(trainer.model_wrapped).__name__}
    with open(os.path.join(out_dir, f"{key}-{tag}.json"), "w") as handle:
        json.dump(report, handle)


def main(model_dir: str, out_dir: str, methods=None) -> None:
    from tests.reliability._cases import METHOD_CASES

    world = int(os.environ.get("WORLD_SIZE", "1"))
    tag = f"rank{os.environ.get('RANK', '0')}" if world > 1 else "single"
    for key in methods or METHOD_CASES:
        run_method(key, model_dir, out_dir, world, tag)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(",") if len(sys.argv) > 3 else None)
    from tests.training import _ddp_train
    from tests.tuners import _prograd_ddp

    for name, check in (("prograd", _prograd_ddp.main), ("train", _ddp_train.main)):
        os.makedirs(os.path.join(sys.argv[2], name), exist_ok=True)
        check(sys.argv[1], os.path.join(sys.argv[2], name))
