"""Evaluation cost: N images over C classes with a trained CoOp, against the image tower alone on the same images.

Three timings on the same batches:

* ``image_tower``: ``CLIPModel.get_image_features`` on every batch, nothing else (the floor);
* ``peft_dor``: a fresh evaluation with the library (``model.eval()``; class features encoded once at the first
  batch, padded to the longest prompt, then reused until a prompt changes);
* ``plain``: the research code's evaluation: every batch re-tokenises and re-encodes all C class prompts at 77
  tokens (:class:`common.NaiveCoOp`).

Target: ``peft_dor / image_tower <= 1.15``. The logits of ``peft_dor`` and ``plain`` must agree to 1e-5 (float32).
"""

from __future__ import annotations

import common
import torch
from common import NaiveCoOp, autocast, check_equal, compare


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=128, help="N, images per evaluation")
    p.add_argument("--classes", type=int, default=50, help="C")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    common.setup(args)
    path = common.build_bench_clip(args.size)
    names = common.class_names(args.classes)
    model = common.coop_model(path, names, args.device)
    wrapper = model.get_base_model()
    clip = wrapper.clip
    ctx = wrapper.clip.text_model.embeddings.coop_ctx["default"]
    with torch.no_grad():
        ctx.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))  # a "trained" context
    naive = NaiveCoOp(
        common.load_clip(path, args.device), wrapper.prompt_tokenizer.tokenizer, ctx
    )  # its own CLIP copy
    images = common.pixels(args.images, args.size, seed=0, device=args.device)
    batches = list(images.split(args.batch_size))
    model.eval()

    # equality (float32): the library's logits against the plain implementation's, on every image
    with torch.no_grad():
        wrapper.set_class_names(names)  # drops the cached class features: a fresh evaluation
        fast = torch.cat([model(pixel_values=b).logits for b in batches])
        plain = torch.cat([naive.logits(b, names) for b in batches])
    diff = check_equal("logits", fast, plain)

    def image_tower():
        with torch.no_grad(), autocast(args.device, args.dtype):
            for b in batches:
                clip.get_image_features(pixel_values=b)

    def peft_dor():
        with torch.no_grad(), autocast(args.device, args.dtype):
            wrapper.set_class_names(names)  # every evaluation starts without cached class features
            for b in batches:
                model(pixel_values=b)

    def plain_eval():
        with torch.no_grad(), autocast(args.device, args.dtype):
            for b in batches:
                naive.logits(b, names)

    times = compare(
        {"image_tower": image_tower, "peft_dor": peft_dor, "plain": plain_eval},
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
    )
    tower = times["image_tower"]["median_s"]
    rows = [
        {
            "implementation": name,
            "median_s": t["median_s"],
            "ms_per_image": 1000 * t["median_s"] / args.images,
            "ratio_to_image_tower": t["median_s"] / tower,
        }
        for name, t in times.items()
    ]
    ratio = times["peft_dor"]["median_s"] / tower
    common.write_results(
        "bench_eval",
        args,
        f"Evaluating {args.images} images over {args.classes} classes: how much slower than the image tower alone? "
        "(target <= 1.15x)",
        rows,
        {
            "ratio_peft_dor_to_image_tower": ratio,
            "ratio_plain_to_peft_dor": times["plain"]["median_s"] / times["peft_dor"]["median_s"],
            "target": 1.15,
            "meets_target": ratio <= 1.15,
            "max_abs_logit_diff_vs_plain": diff,
            "images": args.images,
            "classes": args.classes,
            "batch_size": args.batch_size,
            "times": times,
        },
        notes=[
            f"peft_dor / image tower = {ratio:.3f} (target <= 1.15); the plain evaluation (class prompts re-encoded "
            f"at 77 tokens per batch) is {times['plain']['median_s'] / times['peft_dor']['median_s']:.2f}x slower "
            "than peft_dor.",
            f"Logits of peft_dor and plain agree to {diff:.2g} (float32).",
        ],
    )


if __name__ == "__main__":
    main()
