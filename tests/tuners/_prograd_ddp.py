"""One DORTrainer step (ProGrad's projection composed in) on a tiny CLIP, for the DDP test: the suite's one torchrun
launch (``tests/reliability/_ddp_all_methods.py``) calls :func:`main` on both ranks, the test in one process. Each rank saves its context to ``OUT_DIR/ctx_<rank>.pt``.

The labels are zero-shot CLIP's least likely classes, so the CE gradient conflicts with the KL guide and the
projection is exercised. Depends on nothing but the libraries (no pytest).
"""

from __future__ import annotations

import os
import sys

import torch

GLOBAL_BATCH = 8


def main(model_dir: str, out_dir: str) -> torch.Tensor:
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_dor import DORTrainer, ProGradConfig
    from tests.helpers import tiny_training_args
    from tests.method_cases import CLASS_NAMES

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.manual_seed(3)
    model = get_peft_model(
        CLIPModel.from_pretrained(model_dir).eval(), ProGradConfig(class_names=CLASS_NAMES, n_ctx=4)
    )
    pixels = torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), model.disable_adapter():
        labels = model(pixel_values=pixels).logits.argmin(-1)
    rows = [{"pixel_values": pixels[i], "labels": int(labels[i])} for i in range(GLOBAL_BATCH)]
    args = tiny_training_args(
        out_dir,
        per_device_train_batch_size=GLOBAL_BATCH // world,
        max_steps=1,
        learning_rate=0.5,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
    )
    trainer = DORTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        compute_metrics=None,
        optimizer_name="sgd",
        optimizer_kwargs={"momentum": 0.0, "weight_decay": 0.0},
    )
    trainer.train()
    ctx = model.get_base_model().clip.text_model.embeddings.prograd_ctx["default"].detach().clone()
    torch.save(ctx, os.path.join(out_dir, f"ctx_{rank}.pt"))
    return ctx


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
