"""DOR's overhead: a CoOp+DOR training step over a CoOp step, with as many outliers as classes (peft-dor both).

DOR adds B prompted outlier prompts to the step's text pass (with gradients) and looks their zero-shot targets up in
the pool's precomputed features. With B = C the text side doubles, so the overhead depends on how much of the step
is text:

* ``pixels``: images go through the frozen vision tower in every step (training from images);
* ``cache``: image features come from the feature cache, so a step is (almost) only the text side and the ratio
  approaches 2 (twice the prompts).

Target: ``CoOp+DOR / CoOp <= 1.6``.
"""

from __future__ import annotations

import common
import torch
from common import autocast, compare


def main() -> None:
    args = common.step_args(__doc__)
    run = common.coop_run(args, args.classes, args.batch_size)
    model, ctx, images, embeds, labels = run.model, run.ctx, run.images, run.embeds, run.labels
    dor = common.build_dor(model, n_outliers=args.classes)
    optimizer = torch.optim.SGD([ctx], lr=1e-4, momentum=0.9)
    counter = {"step": 0}

    def make(with_dor: bool, **inputs):
        def train_step():
            counter["step"] += 1
            optimizer.zero_grad(set_to_none=True)
            with autocast(args.device, args.dtype):
                if with_dor:
                    draw = dor.draw(step=counter["step"])
                    out = model(labels=labels, **inputs, **draw.model_kwargs())
                    loss = out.loss + dor.weight * dor.loss(out, draw)
                else:
                    loss = model(labels=labels, **inputs).loss
            loss.backward()
            optimizer.step()

        return train_step

    fns = {
        "coop_pixels": make(False, pixel_values=images),
        "coop_dor_pixels": make(True, pixel_values=images),
        "coop_cache": make(False, image_embeds=embeds),
        "coop_dor_cache": make(True, image_embeds=embeds),
    }
    times = compare(fns, args.warmup, args.repeats, args.device)
    ratios = {
        source: times[f"coop_dor_{source}"]["median_s"] / times[f"coop_{source}"]["median_s"]
        for source in ("pixels", "cache")
    }
    rows = [
        {
            "images_from": source,
            "coop_step_s": times[f"coop_{source}"]["median_s"],
            "coop_dor_step_s": times[f"coop_dor_{source}"]["median_s"],
            "overhead_ratio": ratios[source],
        }
        for source in ("pixels", "cache")
    ]
    common.write_results(
        "bench_dor_overhead",
        args,
        f"CoOp+DOR step / CoOp step with {dor.num_outliers} outliers for {args.classes} classes (target <= 1.6)",
        rows,
        {"ratios": ratios, "target": 1.6, "times": times, "classes": args.classes, "outliers": dor.num_outliers},
        notes=[
            f"Training from images: DOR costs {ratios['pixels']:.2f}x a CoOp step; from the feature cache "
            f"{ratios['cache']:.2f}x, where the step is the text side alone and B = C doubles its prompts.",
            "The zero-shot outlier targets are never encoded during training (looked up in the pool's features).",
        ],
    )


if __name__ == "__main__":
    main()
