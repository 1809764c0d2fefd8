"""Speed of the calibration metrics on large evaluation sets (CPU).

    python benchmarks/metrics_speed.py [--sizes 1000000 2000000] [--classes 10 100] [--repeats 3]

Prints the best-of-``repeats`` wall time of each function. Everything is vectorised (``np.searchsorted`` +
``np.bincount``, one ``np.quantile``); the (N, C) softmax in float64 dominates.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from peft_dor.metrics import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} torch threads")
    print(f"{'N':>10} {'C':>5} {'function':<34} {'seconds':>8}")
    for n in args.sizes:
        for c in args.classes:
            g = torch.Generator().manual_seed(0)
            base = 2.0 * torch.randn(n, c, generator=g)
            # labels drawn from the softmax (calibrated by construction), logits then made 3x too sharp: a realistic
            # temperature-scaling problem (random labels would send T to its clamp instead)
            labels = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
            logits = 3.0 * base
            cases = {
                "expected_calibration_error": partial(expected_calibration_error, logits, labels),
                "adaptive_calibration_error": partial(adaptive_calibration_error, logits, labels),
                "reliability_table": partial(reliability_table, logits, labels),
                "calibration_report (all six)": partial(calibration_report, logits, labels),
                "CalibrationAccumulator, 64 batches": partial(_accumulate, logits, labels, 64),
                "fit_temperature": partial(fit_temperature, logits, labels),
            }
            for name, fn in cases.items():
                print(f"{n:>10,} {c:>5} {name:<34} {_best(fn, args.repeats):>8.3f}", flush=True)


def _accumulate(logits: torch.Tensor, labels: torch.Tensor, n_batches: int) -> dict[str, float]:
    acc = CalibrationAccumulator()
    for chunk_logits, chunk_labels in zip(logits.chunk(n_batches), labels.chunk(n_batches), strict=True):
        acc.update(chunk_logits, chunk_labels)
    return acc.compute()


if __name__ == "__main__":
    main()
