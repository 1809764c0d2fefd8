"""The text pass (forward + backward) with the shared prompt prefix encoded once vs every prompt's full rows.

CLIP's text attention is causal, so the positions before the first token where the prompts of a pass differ
(``[SOS]`` and the learned context, for CoOp's "end" layout) have the same hidden states in every prompt.
``PromptCLIP.share_text_prefix`` (on by default) runs them once per pass and only the suffixes (class name, ".",
EOS) per prompt; off, every prompt runs all its positions (the straightforward implementation, already padded to the
longest prompt of the pass). Cases:

* CoOp with 16 context tokens at 100 and 1,000 classes (ImageNet's setting): one pass over all class prompts;
* CoCoOp (its default 4-token "a photo of a" context) at batch 8 x 100 classes: every prompt once per image, the
  prefix shared across the classes of each image.

Time: both settings alternate on one model in one process (median of rounds). Activation memory: the bytes the
forward pass saves for backward, summed over distinct storages with ``torch.autograd.graph.saved_tensors_hooks``
(every parameter excluded, frozen or not: both settings save the same weights), which is what a training step holds
between forward and backward. Peak memory: each setting of each case also runs once in a fresh process, whose
resident-set growth over the pass is read as in ``bench_memory_1000_classes`` (peak counter reset after set-up,
``VmHWM``, glibc's mmap threshold fixed so freed tensors leave the resident set; CUDA: ``max_memory_allocated``). Before timing, features and gradients of both settings must agree (float32, 1e-5). Target for CoOp at
1,000 classes: >= 3x faster and >= 3x less activation memory.
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

from peft_dor.prompting.prefix import shared_prefix_length

SETTINGS = ("full_rows", "shared_prefix")


def activation_bytes(fn, params) -> tuple[int, object]:
    """Bytes saved for backward by ``fn()`` (distinct storages, parameters excluded) and ``fn``'s result."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = fn()
    return sum(storages.values()), value


def build(path: str, method: str, n_classes: int, device: str):
    from peft import get_peft_model

    import peft_dor

    names = common.class_names(n_classes)
    if method == "coop":
        config = peft_dor.CoOpConfig(class_names=names, n_ctx=16)
    else:
        config = peft_dor.CoCoOpConfig(class_names=names)
    model = get_peft_model(common.load_clip(path, device), config)
    model.train()
    return model, names


def case_inputs(model, n_classes: int, batch: int | None, device: str):
    """The pass's image features (CoCoOp; None for CoOp) and a fixed random linear readout of the text features."""
    width = model.get_base_model().clip.config.projection_dim
    generator = torch.Generator().manual_seed(0)
    images = None
    if batch:
        images = torch.nn.functional.normalize(torch.randn(batch, width, generator=generator), dim=-1).to(device)
    shape = (batch, n_classes, width) if batch else (n_classes, width)
    return images, torch.randn(shape, generator=generator).to(device)


def text_loss(model, names, images, weights, share: bool, args) -> torch.Tensor:
    wrapper = model.get_base_model()
    wrapper.share_text_prefix = share
    with autocast(args.device, args.dtype):
        features = wrapper.encode_text(names, images)
    return (features.float() * weights).sum()


def child(args) -> None:
    """One setting of one case in this (fresh) process: print the pass's peak memory growth as JSON."""
    method, n_classes, batch = args.child_case.split(":")
    n_classes, batch = int(n_classes), int(batch) or None
    model, names = build(common.build_bench_clip(args.size), method, n_classes, args.device)
    images, weights = case_inputs(model, n_classes, batch, args.device)
    model.get_base_model().tokenize(names)  # tokenizer caches warm, like every pass after the first
    shared = args.child == "shared_prefix"
    base, peak = common.peak_memory_growth(
        lambda: text_loss(model, names, images, weights, shared, args).backward(), args.device
    )
    print(json.dumps({"peak_bytes": peak - base}))


def peak_bytes(args, method: str, n_classes: int, batch: int | None, setting: str) -> int:
    argv = [sys.executable, __file__, "--child", setting, "--child-case", f"{method}:{n_classes}:{batch or 0}"]
    argv += ["--size", args.size, "--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    return json.loads(out)["peak_bytes"]


def run_case(args, path: str, method: str, n_classes: int, batch: int | None) -> tuple[dict, dict]:
    """One case: equality check, activation memory and time of both settings; the results row and raw data."""
    peaks = {setting: peak_bytes(args, method, n_classes, batch, setting) for setting in SETTINGS}
    model, names = build(path, method, n_classes, args.device)
    wrapper = model.get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    images, weights = case_inputs(model, n_classes, batch, args.device)

    def forward(share: bool):
        return text_loss(model, names, images, weights, share, args)

    def text_pass(share: bool):
        model.zero_grad(set_to_none=True)
        forward(share).backward()

    grads, memory, losses = {}, {}, {}
    for share in (True, False):
        model.zero_grad(set_to_none=True)
        memory[share], loss = activation_bytes(lambda share=share: forward(share), list(model.parameters()))
        loss.backward()
        losses[share] = loss.detach()
        grads[share] = torch.cat([p.grad.flatten() for p in params])
    scale = float(grads[False].abs().max())
    loss_scale = max(1.0, abs(float(losses[False])))
    diffs = {
        "loss": check_equal(f"{method} loss", losses[True] / loss_scale, losses[False] / loss_scale),
        "grad": check_equal(f"{method} gradient", grads[True] / scale, grads[False] / scale),
    }
    times = compare(
        {"full_rows": lambda: text_pass(False), "shared_prefix": lambda: text_pass(True)},
        args.warmup,
        args.repeats,
        args.device,
    )
    prompts = wrapper.tokenize(names)
    case = f"{method} {batch} x {n_classes}" if batch else f"{method} {n_classes} classes"
    row = {
        "case": case,
        "prompt_tokens": int(prompts.input_ids.shape[1]),
        "shared_tokens": shared_prefix_length(prompts, wrapper.clip.text_model.embeddings),
        "full_rows_s": times["full_rows"]["median_s"],
        "shared_prefix_s": times["shared_prefix"]["median_s"],
        "speed_up": times["full_rows"]["median_s"] / times["shared_prefix"]["median_s"],
        "full_rows_MiB": memory[False] / 2**20,
        "shared_prefix_MiB": memory[True] / 2**20,
        "memory_ratio": memory[False] / memory[True],
        "full_rows_peak_MiB": peaks["full_rows"] / 2**20,
        "shared_prefix_peak_MiB": peaks["shared_prefix"] / 2**20,
        "peak_ratio": peaks["full_rows"] / peaks["shared_prefix"],
    }
    raw = {"times": times, "activation_bytes": {"full_rows": memory[False], "shared": memory[True]}, "diffs": diffs}
    raw["peak_bytes"] = peaks
    print(row, flush=True)
    return row, raw


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, nargs="+", default=[100, 1000], help="CoOp class counts")
    p.add_argument("--cocoop-batch", type=int, default=8)
    p.add_argument("--cocoop-classes", type=int, default=100)
    p.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)  # internal: one setting's peak memory
    p.add_argument("--child-case", help=argparse.SUPPRESS)
    p.set_defaults(repeats=3)
    args = p.parse_args()
    common.setup(args)
    if args.child:
        child(args)
        return
    path = common.build_bench_clip(args.size)
    cases = [("coop", c, None) for c in args.classes] + [("cocoop", args.cocoop_classes, args.cocoop_batch)]
    rows, data = [], {}
    for method, n_classes, batch in cases:
        row, raw = run_case(args, path, method, n_classes, batch)
        rows.append(row)
        data[row["case"]] = raw
    coop_1000 = next((row for row in rows if row["case"] == "coop 1000 classes"), None)
    notes = [
        "full_rows: every prompt runs all its positions through every layer (sharing off); shared_prefix: the "
        "positions all prompts share run once per pass (once per image for CoCoOp). Both pad to the longest prompt.",
        "Activation memory = bytes saved for backward by the forward pass (distinct storages, weights excluded). "
        "Peak = resident-set growth over one pass (forward + backward) in a fresh process per setting; it also "
        "holds the backward pass's transient buffers and the allocator's slack.",
        "Class names are two tokens; CoOp prompts are [SOS] + 16 context + name + '.' + [EOS] = 21 tokens.",
        "Loss and gradients of both settings agreed before timing (float32, relative 1e-5).",
    ]
    if coop_1000:
        notes.insert(
            0,
            f"CoOp at 1,000 classes: {coop_1000['speed_up']:.1f}x faster and {coop_1000['memory_ratio']:.1f}x less "
            "activation memory with the shared prefix (target >= 3x each).",
        )
        data["meets_target"] = coop_1000["speed_up"] >= 3 and coop_1000["memory_ratio"] >= 3
    common.write_results(
        "bench_prefix_sharing",
        args,
        "How much faster, and with how much less activation memory, does the text pass (forward + backward) run when "
        "the prompt prefix shared by all prompts is encoded once? (target >= 3x each for CoOp at 1,000 classes)",
        rows,
        data,
        notes,
    )


if __name__ == "__main__":
    main()
