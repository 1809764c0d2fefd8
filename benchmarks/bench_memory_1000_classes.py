"""Peak memory and time of a 1000-class CoOp training step, with and without chunked, checkpointed text encoding.

Every CoOp step runs all C class prompts through the text tower with gradients, so activation memory grows with C
(CoOp ran out of memory on ImageNet even at batch 1). ``PromptCLIP.text_chunk_size`` encodes the prompts in chunks
and ``PromptCLIP.text_checkpointing`` recomputes each text layer's activations in the backward pass instead of
storing them.

How memory is measured: each configuration runs in a fresh Python process (so memory freed by one configuration
cannot hide the next one's peak). After the model and inputs are ready, the process resets the kernel's peak-RSS
counter (``echo 5 > /proc/self/clear_refs``) and reads its resident size (glibc's mmap threshold is fixed at 128 KiB
so that freed tensors leave the resident set at once); after one training step (forward,
backward) it reads the peak (``VmHWM``). The step's peak memory is the difference. On CUDA the same is read from
``torch.cuda.max_memory_allocated``.

Time: both configurations alternate on one model in one process (median of rounds). The loss and the context
gradient of both must agree (float32, 1e-5). Targets: peak ratio <= 0.5, time ratio <= 1.4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import common
import torch
from common import autocast, check_equal, compare

CONFIGS = {
    "plain": {"text_chunk_size": None, "text_checkpointing": False},
    "chunked": {"text_chunk_size": "chunk", "text_checkpointing": False},
    "checkpointed": {"text_chunk_size": None, "text_checkpointing": True},
    "chunked+checkpointed": {"text_chunk_size": "chunk", "text_checkpointing": True},
}


def configure(wrapper, name: str, chunk: int) -> None:
    config = CONFIGS[name]
    wrapper.text_chunk_size = chunk if config["text_chunk_size"] == "chunk" else None
    wrapper.text_checkpointing = config["text_checkpointing"]


def make(args):
    path = common.build_bench_clip(args.size)
    names = common.class_names(args.classes)
    model = common.coop_model(path, names, args.device, n_ctx=args.n_ctx)
    model.train()
    width = model.get_base_model().clip.config.projection_dim
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(args.batch_size, width, generator=generator).to(args.device)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator).to(args.device)
    return model, embeds, labels


def step(model, embeds, labels, device="cpu", dtype="float32"):
    model.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        out = model(image_embeds=embeds, labels=labels)
    out.loss.backward()
    return out.loss.detach()


def child(args) -> None:
    """Measure one configuration's peak step memory in this (fresh) process; print it as JSON."""
    model, embeds, labels = make(args)
    wrapper = model.get_base_model()
    configure(wrapper, args.child, args.chunk)
    wrapper.tokenize(wrapper.class_names)  # tokenizer caches warm, like every step after the first
    base, peak = common.peak_memory_growth(lambda: step(model, embeds, labels, args.device, args.dtype), args.device)
    print(json.dumps({"config": args.child, "base_bytes": base, "peak_bytes": peak, "step_peak_bytes": peak - base}))


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--n-ctx", type=int, default=16, help="context length (CoOp's ImageNet setting is 16)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk", type=int, default=100, help="text_chunk_size of the chunked configurations")
    p.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)  # internal: one configuration
    args = p.parse_args()
    common.setup(args)
    if args.child:
        child(args)
        return

    memory = {}
    for name in CONFIGS:
        argv = [sys.executable, __file__, "--child", name, "--size", args.size, "--device", args.device]
        argv += ["--dtype", args.dtype]
        argv += ["--classes", str(args.classes), "--n-ctx", str(args.n_ctx), "--batch-size", str(args.batch_size)]
        argv += ["--chunk", str(args.chunk), "--threads", str(args.threads)]
        # A fixed mmap threshold makes glibc return every large freed tensor to the kernel at once, so the resident
        # set follows live memory instead of heap high-water marks left by freed activations.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
        memory[name] = json.loads(out)
        print(name, memory[name], flush=True)

    model, embeds, labels = make(args)
    wrapper = model.get_base_model()
    ctx = wrapper.clip.text_model.embeddings.coop_ctx["default"]
    results = {}
    for name in CONFIGS:
        configure(wrapper, name, args.chunk)
        loss = step(model, embeds, labels)
        results[name] = (loss, ctx.grad.detach().clone())
    diffs = {
        name: max(
            check_equal(f"{name} loss", results[name][0], results["plain"][0]),
            check_equal(f"{name} grad", results[name][1], results["plain"][1]),
        )
        for name in CONFIGS
    }

    def timer(name):
        def run():
            configure(wrapper, name, args.chunk)
            step(model, embeds, labels, args.device, args.dtype)

        return run

    times = compare({name: timer(name) for name in CONFIGS}, args.warmup, args.repeats, args.device)
    plain_peak = memory["plain"]["step_peak_bytes"]
    plain_time = times["plain"]["median_s"]
    rows = [
        {
            "configuration": name,
            "step_peak_MiB": memory[name]["step_peak_bytes"] / 2**20,
            "peak_ratio": memory[name]["step_peak_bytes"] / plain_peak,
            "step_s": times[name]["median_s"],
            "time_ratio": times[name]["median_s"] / plain_time,
            "max_diff_vs_plain": diffs[name],
        }
        for name in CONFIGS
    ]
    best = rows[-1]
    common.write_results(
        "bench_memory_1000_classes",
        args,
        f"A {args.classes}-class CoOp step: peak memory and time with chunked, checkpointed text encoding vs without "
        "(targets: memory <= 0.5x, time <= 1.4x)",
        rows,
        {
            "memory": memory,
            "times": times,
            "peak_ratio": best["peak_ratio"],
            "time_ratio": best["time_ratio"],
            "meets_target": best["peak_ratio"] <= 0.5 and best["time_ratio"] <= 1.4,
            "chunk": args.chunk,
            "n_ctx": args.n_ctx,
            "batch_size": args.batch_size,
        },
        notes=[
            f"chunked+checkpointed (chunk {args.chunk}): peak memory {best['peak_ratio']:.3f}x and time "
            f"{best['time_ratio']:.2f}x of the plain step (targets <= 0.5x, <= 1.4x).",
            "Peak memory: growth of the resident set during one step (forward + backward), each configuration in a "
            "fresh process, peak counter reset after set-up (/proc/self/clear_refs, VmHWM); CUDA: "
            "max_memory_allocated.",
            "Chunking alone does not lower a training step's peak (every chunk's activations wait for the backward); "
            "checkpointing does, and chunking then bounds the recomputation to one chunk at a time.",
            "Steps use cached image features (image_embeds), so the peak is the text side's.",
        ],
    )


if __name__ == "__main__":
    main()
