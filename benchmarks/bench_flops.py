"""Achieved FLOP rate of CoOp training steps against the machine's measured matrix-multiply rate.

FLOPs of a step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies and attention, forward
and backward; element-wise work is not counted, so the rate is a lower bound of the work done). The machine's rate is
the best of square float32 ``torch.mm`` products (1024, 2048) timed in the same process, in the same rounds as the
steps. Reported: achieved rate / matmul rate per step kind.

Step kinds (mid size, 50 classes, batch 32):

* ``coop_from_cache``: text side only (image features from the feature cache);
* ``coop_dor_from_cache``: the same with 50 DOR outliers (the prompted outlier features come from the same pass);
* ``coop_from_pixels``: the frozen vision tower in the step too.
"""

from __future__ import annotations

import torch
from common import autocast, build_bench_clip, class_names, compare, coop_model, outlier_names, parser, pixels, setup
from common import write_results as write


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=[1024, 2048])
    args = p.parse_args()
    setup(args)
    from torch.utils.flop_counter import FlopCounterMode

    path = build_bench_clip(args.size)
    names = class_names(args.classes)
    outliers = outlier_names(args.classes)
    model = coop_model(path, names, args.device)
    model.train()
    clip = model.get_base_model().clip
    images = pixels(args.batch_size, args.size, device=args.device)
    with torch.no_grad():
        embeds = clip.get_image_features(pixel_values=images).pooler_output
    labels = torch.arange(args.batch_size, device=args.device) % args.classes
    dtype = getattr(torch, args.dtype)

    def step(**inputs):
        def run():
            model.zero_grad(set_to_none=True)
            with autocast(args.device, args.dtype):
                out = model(labels=labels, **inputs)
                loss = out.loss
                if out.extra_text_embeds is not None:
                    loss = loss + out.extra_text_embeds.float().sum() * 0  # the outlier branch joins the backward
            loss.backward()

        return run

    steps = {
        "coop_from_cache": step(image_embeds=embeds),
        "coop_dor_from_cache": step(image_embeds=embeds, extra_names=outliers),
        "coop_from_pixels": step(pixel_values=images),
    }
    flops = {}
    for name, fn in steps.items():
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        flops[name] = counter.get_total_flops()

    mats = {n: torch.randn(n, n, device=args.device, dtype=dtype) for n in args.matmul_sizes}

    def matmul(n):
        def run():
            for _ in range(3):
                torch.mm(mats[n], mats[n])

        return run

    fns = {f"matmul_{n}": matmul(n) for n in args.matmul_sizes} | steps
    times = compare(fns, args.warmup, args.repeats, args.device)
    matmul_rates = {n: 3 * 2 * n**3 / times[f"matmul_{n}"]["median_s"] for n in args.matmul_sizes}
    peak = max(matmul_rates.values())
    rows = [
        {"kind": f"matmul {n}x{n}", "GFLOP": 2 * n**3 / 1e9, "median_s": times[f"matmul_{n}"]["median_s"] / 3}
        | {"GFLOP_per_s": rate / 1e9, "fraction_of_matmul_rate": rate / peak}
        for n, rate in matmul_rates.items()
    ]
    for name in steps:
        rate = flops[name] / times[name]["median_s"]
        rows.append(
            {
                "kind": name,
                "GFLOP": flops[name] / 1e9,
                "median_s": times[name]["median_s"],
                "GFLOP_per_s": rate / 1e9,
                "fraction_of_matmul_rate": rate / peak,
            }
        )
    fractions = {r["kind"]: r["fraction_of_matmul_rate"] for r in rows[len(matmul_rates) :]}
    write(
        "bench_flops",
        args,
        "What fraction of the machine's measured matrix-multiply rate does a training step achieve? (reported; aim "
        ">= 50% at mid size)",
        rows,
        {"matmul_rate_flops": peak, "step_flops": flops, "fractions": fractions, "times": times},
        notes=[
            "Fractions of the best measured matmul rate: "
            + ", ".join(f"{k} {v:.0%}" for k, v in fractions.items())
            + ".",
            "FLOPs: FlopCounterMode (matmuls and attention, forward + backward); element-wise work (LayerNorm, "
            "GELU, softmax, embedding) is not counted, so achieved rates are lower bounds.",
            "The text side multiplies (prompts x tokens, 256) by (256, 1024) matrices: small, memory-bound products "
            "next to the vision tower's 197-token sequences.",
        ],
    )


if __name__ == "__main__":
    main()
