"""One rank of the 2-process gloo test in test_accumulator.py: ``python gloo_worker.py RANK WORLD INIT_FILE OUT_DIR``.

Run as a plain script (not via pickling a test function) so that each process imports only torch and
``peft_dor.metrics``: the metrics package imports nothing else from ``peft_dor`` by design, so the worker registers a
bare ``peft_dor`` package object instead of running the top-level ``__init__`` (transformers, peft), which would cost
several seconds per process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types

N_SAMPLES, N_CLASSES, N_BINS = 1000, 6, 10
# uneven shards: rank 0 holds 370 samples, rank 1 the other 630, both fed in batches of 64
SPLIT = 370


def make_data():
    """The evaluation set both the workers and the single-process reference use."""
    import torch

    g = torch.Generator().manual_seed(1234)
    logits = 4.0 * torch.randn(N_SAMPLES, N_CLASSES, generator=g)
    random_labels = torch.randint(0, N_CLASSES, (N_SAMPLES,), generator=g)
    labels = torch.where(torch.rand(N_SAMPLES, generator=g) < 0.5, logits.argmax(1), random_labels)
    return logits, labels


def _import_metrics_only():
    spec = importlib.util.find_spec("peft_dor")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("peft_dor is not importable from this interpreter's sys.path")
    package = types.ModuleType("peft_dor")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["peft_dor"] = package
    import peft_dor.metrics

    return peft_dor.metrics


def main(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    metrics = _import_metrics_only()

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        logits, labels = make_data()
        shard = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N_SAMPLES)
        logits, labels = logits[shard], labels[shard]
        gathered = metrics.CalibrationAccumulator(n_bins=N_BINS, extras=True)
        local_only = metrics.CalibrationAccumulator(n_bins=N_BINS, sync_dist=False)
        for start in range(0, logits.shape[0], 64):
            gathered.update(logits[start : start + 64], labels[start : start + 64])
            local_only.update(logits[start : start + 64], labels[start : start + 64])
        result = {
            "gathered": gathered.compute(),
            "gathered_confidence": gathered.gathered_stats().confidence.tolist(),
            "local_ece": metrics.expected_calibration_error(logits, labels, N_BINS),
            "not_synced_ece": local_only.compute()["ece"],
        }
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
