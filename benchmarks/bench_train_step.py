"""A CoOp+DOR training step with peft-dor against a straightforward implementation of the same step.

Same model, same context, same batch, same outliers (drawn by the library's sampler and given to both):

* ``plain`` (:class:`common.NaiveCoOp`, the research code's way): every prompt padded to 77 tokens; class and outlier
  prompts tokenised and encoded every step; DOR's zero-shot outlier targets tokenised and encoded by frozen CLIP
  every step; images through the vision tower every step;
* ``peft_dor_pixels``: the library from images: prompts padded to the longest prompt of the pass, class and outlier
  prompts in one text pass, zero-shot targets looked up in the pool's precomputed features;
* ``peft_dor_cache``: the same from the image-feature cache (``image_embeds=``; the cache's one-off build cost is in
  ``bench_feature_cache``);
* ``peft_dor_cache_full_rows``: the same with prefix sharing off (``PromptCLIP.share_text_prefix = False``): every
  prompt runs all its positions, where ``peft_dor_cache`` encodes the ``[SOS]`` + context prefix once per pass.

A step is forward, loss (CE + lambda * DOR), backward and an SGD step. The first step's losses must agree to 1e-5
(float32). Target: ``plain / peft_dor >= 3``.
"""

from __future__ import annotations

import contextlib

import common
import torch
from common import NaiveCoOp, autocast, check_equal, compare

from peft_dor.prompting.prefix import shared_prefix_length


@contextlib.contextmanager
def full_rows(wrapper):
    """Prefix sharing off inside the block (every prompt runs all its positions)."""
    wrapper.share_text_prefix = False
    try:
        yield
    finally:
        wrapper.share_text_prefix = True


def main() -> None:
    args = common.step_args(__doc__)
    run = common.coop_run(args, args.classes, args.batch_size)
    model, ctx, images, embeds, labels, names = run.model, run.ctx, run.images, run.embeds, run.labels, run.names
    naive = NaiveCoOp(common.load_clip(run.path, args.device), run.wrapper.prompt_tokenizer.tokenizer, ctx)
    dor = common.build_dor(model, n_outliers=args.classes)
    fast_opt = torch.optim.SGD([ctx], lr=1e-4, momentum=0.9)
    naive_opt = torch.optim.SGD([naive.ctx], lr=1e-4, momentum=0.9)

    def fast_loss(step: int, **inputs) -> torch.Tensor:
        draw = dor.draw(step=step)
        out = model(labels=labels, **inputs, **draw.model_kwargs())
        return out.loss + dor.weight * dor.loss(out, draw)

    def naive_loss(step: int) -> torch.Tensor:
        return naive.loss(images, labels, names, dor.draw(step=step).names, weight=dor.weight)

    # equality of the first step (float32, before any update)
    loss_plain = naive_loss(0)
    loss_pixels = fast_loss(0, pixel_values=images)
    loss_cache = fast_loss(0, image_embeds=embeds)
    with full_rows(run.wrapper):
        loss_full_rows = fast_loss(0, image_embeds=embeds)
    diffs = {
        "peft_dor_pixels": check_equal("pixels loss", loss_pixels, loss_plain),
        "peft_dor_cache": check_equal("cache loss", loss_cache, loss_plain),
        "peft_dor_cache_full_rows": check_equal("cache loss, full rows", loss_full_rows, loss_plain),
    }

    counter = {"plain": 0, "fast": 0}

    def train_step(optimizer, loss_fn):
        optimizer.zero_grad(set_to_none=True)
        with autocast(args.device, args.dtype):
            loss = loss_fn()
        loss.backward()
        optimizer.step()

    def plain():
        counter["plain"] += 1
        train_step(naive_opt, lambda: naive_loss(counter["plain"]))

    def peft_dor_pixels():
        counter["fast"] += 1
        train_step(fast_opt, lambda: fast_loss(counter["fast"], pixel_values=images))

    def peft_dor_cache():
        counter["fast"] += 1
        train_step(fast_opt, lambda: fast_loss(counter["fast"], image_embeds=embeds))

    def peft_dor_cache_full_rows():
        with full_rows(run.wrapper):
            peft_dor_cache()

    times = compare(
        {
            "plain": plain,
            "peft_dor_pixels": peft_dor_pixels,
            "peft_dor_cache": peft_dor_cache,
            "peft_dor_cache_full_rows": peft_dor_cache_full_rows,
        },
        args.warmup,
        args.repeats,
        args.device,
    )
    base = times["plain"]["median_s"]
    rows = [
        {
            "implementation": name,
            "step_s": t["median_s"],
            "speed_up_vs_plain": base / t["median_s"],
            "first_loss_diff": diffs.get(name, 0.0),
        }
        for name, t in times.items()
    ]
    speed_pixels = base / times["peft_dor_pixels"]["median_s"]
    speed_cache = base / times["peft_dor_cache"]["median_s"]
    sharing = times["peft_dor_cache_full_rows"]["median_s"] / times["peft_dor_cache"]["median_s"]
    prompts = run.wrapper.tokenize(names + dor.draw(step=0).names)
    shared = shared_prefix_length(prompts, run.wrapper.clip.text_model.embeddings)
    common.write_results(
        "bench_train_step",
        args,
        "How much faster is a CoOp+DOR training step with peft-dor than a straightforward implementation? "
        "(target >= 3x, same loss to 1e-5)",
        rows,
        {
            "speed_up_pixels": speed_pixels,
            "speed_up_cache": speed_cache,
            "prefix_sharing_speed_up_cache": sharing,
            "target": 3.0,
            "meets_target": speed_cache >= 3.0,
            "loss_diffs": diffs,
            "classes": args.classes,
            "outliers": dor.num_outliers,
            "batch_size": args.batch_size,
            "times": times,
        },
        notes=[
            f"peft-dor is {speed_cache:.1f}x faster than the plain step when training from the feature cache and "
            f"{speed_pixels:.1f}x when images go through the vision tower every step (target >= 3x).",
            f"Prefix sharing makes the step from the cache {sharing:.2f}x faster than the same step with every prompt's "
            f"full rows (peft_dor_cache_full_rows): {shared} of the {prompts.input_ids.shape[1]} prompt tokens "
            "([SOS] + 4 context) are shared.",
            f"{args.classes} classes, {dor.num_outliers} outliers per step (B = C, the official setting), batch "
            f"{args.batch_size}; class names are 2 tokens, so prompts are 9 tokens long instead of 77.",
            "The first step's losses agree within first_loss_diff (float32).",
        ],
    )


if __name__ == "__main__":
    main()
