"""The demo: the DOR paper's base-to-new table in miniature, on the shipped world CLIP, in a few minutes on a CPU.

``python -m peft_dor.world.demo --output_dir DIR [--methods coop kgcoop maple tcp]`` runs zero-shot, CoOp and
CoOp + DOR (and each extra method with and without DOR) over seeds 1, 2, 3 on the world's same-colour base-to-new
split (:mod:`peft_dor.world.experiment`), prints the paper-layout table and writes to ``DIR``:

* ``results.json``: ``summary[method][split][metric]`` (split ``base``/``new``/``hm``, metric ``accuracy``/``ece``
  as fractions, with ``*_sd``), ``runs`` (one entry per seed and method), ``drift[method]["new_cos_to_zero_shot"]``
  and ``config``;
* ``reliability_new.png``: reliability diagrams of the new classes, one panel per method;
* ``drift.png``: each method's mean cosine between new-class text features and their zero-shot features.

Example:
    ```python
    from peft_dor.world.demo import run_demo

    results = run_demo("demo_output")
    results["summary"]["coop+dor"]["new"]["ece"]
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .experiment import (
    METHODS,
    ExperimentConfig,
    format_table,
    split_metrics,
    summarise,
    test_data,
    torch_threads,
    train_and_evaluate,
    zero_shot_logits,
)
from .world import load_world, world_clip_path

RESULTS_FILE = "results.json"
DEFAULT_SEEDS = (1, 2, 3)


def method_names(methods: Sequence[str]) -> list[str]:
    """``zero_shot`` then ``<m>`` and ``<m>+dor`` for each method (``coop`` always first)."""
    ordered = ["coop", *[m for m in methods if m != "coop"]]
    return ["zero_shot", *[name for m in ordered for name in (m, f"{m}+dor")]]


def _check_arguments(output_dir, methods, seeds, overwrite_output_dir) -> tuple[Path, list[str], list[int]]:
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"`methods` has unknown methods {unknown}; choose from {sorted(METHODS)}.")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"`seeds` must be non-negative integers, e.g. (1, 2, 3); got {seeds!r}.")
    output_dir = Path(output_dir)
    if (output_dir / RESULTS_FILE).exists() and not overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds demo results ({RESULTS_FILE}); pass --overwrite_output_dir "
            "(overwrite_output_dir=True) to replace them, or choose another --output_dir."
        )
    return output_dir, methods, seeds


def check_demo_arguments(
    output_dir: str | os.PathLike,
    methods: Sequence[str] = ("coop",),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    overwrite_output_dir: bool = False,
    **options,
) -> tuple[Path, list[str], list[int], ExperimentConfig]:
    """The checks :func:`run_demo` makes before any work, for callers that report bad input their own way.

    Raises:
        ValueError: an unknown method, a bad seed or option (naming it and the fix).
        FileExistsError: ``output_dir`` already holds results and ``overwrite_output_dir`` is False.
    """
    output_dir, methods, seeds = _check_arguments(output_dir, methods, seeds, overwrite_output_dir)
    return output_dir, methods, seeds, ExperimentConfig(**options)


def run_demo(
    output_dir: str | os.PathLike,
    methods: Sequence[str] = ("coop",),
    seeds: Sequence[int] = DEFAULT_SEEDS,
    overwrite_output_dir: bool = False,
    model_path: str | os.PathLike | None = None,
    plots: bool = True,
    verbose: bool = True,
    **options,
) -> dict:
    """Run the world base-to-new demo and write ``results.json`` and the figures to ``output_dir``.

    Args:
        output_dir: where to write; refused if it already holds ``results.json`` unless ``overwrite_output_dir``.
        methods: prompt methods to run with and without DOR (``coop`` always runs), from ``coop``, ``kgcoop``,
            ``maple``, ``tcp``.
        seeds: a seed draws the shots, the prompt initialisation and the outliers; the test images stay fixed.
        overwrite_output_dir: replace earlier results.
        model_path: a world CLIP folder; default the shipped one (:func:`peft_dor.world.world_clip_path`).
        plots: draw the figures (needs matplotlib).
        verbose: print the table.
        **options: fields of :class:`~peft_dor.world.experiment.ExperimentConfig` (``epochs``, ``shots``, ...).

    Returns:
        The content of ``results.json``.
    """
    output_dir, methods, seeds, config = check_demo_arguments(
        output_dir, methods, seeds, overwrite_output_dir, **options
    )
    with torch_threads(config.threads):
        return _run_demo(output_dir, methods, seeds, model_path, plots, verbose, config)


def _run_demo(output_dir: Path, methods, seeds, model_path, plots: bool, verbose: bool, config) -> dict:
    from transformers import AutoModel, AutoTokenizer

    model_path = str(model_path or world_clip_path())
    world = load_world(model_path)
    start = time.time()
    task = test_data(world, config)
    names = method_names(methods)
    clip = AutoModel.from_pretrained(model_path).eval()  # the world CLIP or the world SigLIP
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    zero_shot = {
        "base": zero_shot_logits(clip, tokenizer, task.split.base, task.base_test),
        "new": zero_shot_logits(clip, tokenizer, task.split.new, task.new_test),
    }
    runs, new_logits, drift, pools = [], {}, {}, {}
    for seed in seeds:
        # zero-shot has no training: its row repeats per seed so every method has one entry per seed
        runs.append(_run_entry("zero_shot", seed, zero_shot["base"], zero_shot["new"], task, config, [1.0]))
    new_logits["zero_shot"] = [zero_shot["new"]]
    drift["zero_shot"] = [1.0]
    for name in names[1:]:
        method, use_dor = name.removesuffix("+dor"), name.endswith("+dor")
        for seed in seeds:
            result = train_and_evaluate(model_path, world, task, method, seed, config, {} if use_dor else None)
            runs.append(
                _run_entry(
                    name, seed, result.base_logits, result.new_logits, task, config, result.new_cos_to_zero_shot
                )
            )
            new_logits.setdefault(name, []).append(result.new_logits)
            drift.setdefault(name, []).append(float(np.mean(result.new_cos_to_zero_shot)))
            if result.pool is not None:
                pools.setdefault(name, result.pool)
            if verbose:
                print(f"{name} seed {seed}: done ({time.time() - start:.0f} s)", flush=True)
    summary = summarise(runs, names)
    results = {
        "summary": summary,
        "runs": runs,
        "drift": {
            name: {"new_cos_to_zero_shot": float(np.mean(v)), "new_cos_to_zero_shot_sd": _sd(v), "per_seed": v}
            for name, v in drift.items()
        },
        "config": {
            **config.to_dict(),
            "methods": names,
            "seeds": seeds,
            "model_path": model_path,
            "base_classes": task.split.base,
            "new_classes": task.split.new,
            "dor_vocabulary": task.split.vocabulary,
            "dor_pool": pools,
            "logit_scale": clip.logit_scale.exp().item(),
        },
        "seconds": round(time.time() - start, 1),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    if plots:
        labels = task.new_test.labels
        plot_reliability(new_logits, labels, config.n_bins, output_dir / "reliability_new.png")
        plot_drift(results["drift"], output_dir / "drift.png")
        results["figures"] = ["reliability_new.png", "drift.png"]
    tmp = output_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, output_dir / RESULTS_FILE)
    if verbose:
        title = f"World base-to-new ({len(task.split.base)} base / {len(task.split.new)} new {config.colour} nouns, "
        title += f"{config.shots} shots, seeds {seeds}), % mean ± sd; ECE with {config.n_bins} bins"
        print(format_table(summary, title))
        print("new-class text features, mean cos to zero-shot: ", end="")
        print(", ".join(f"{m} {d['new_cos_to_zero_shot']:.3f}" for m, d in results["drift"].items()))
        print(f"wrote {output_dir / RESULTS_FILE} ({results['seconds']:.0f} s)")
    return results


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _run_entry(name, seed, base_logits, new_logits, task, config, new_cos) -> dict:
    return {
        "method": name,
        "seed": seed,
        "base": split_metrics(base_logits, task.base_test.labels, config.n_bins),
        "new": split_metrics(new_logits, task.new_test.labels, config.n_bins),
        "new_cos_to_zero_shot": float(np.mean(new_cos)),
    }


def plot_reliability(new_logits: dict, labels, n_bins: int, path) -> str:
    """Reliability diagrams of the new classes side by side, one per method (all seeds' predictions pooled)."""
    import torch
    from matplotlib.figure import Figure

    from ..metrics import plot_reliability_diagram

    fig = Figure(figsize=(4.2 * len(new_logits), 4.6), dpi=110, layout="constrained")
    axes = fig.subplots(2, len(new_logits), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
    for column, (name, logits) in enumerate(new_logits.items()):
        pooled = torch.cat(logits)
        pooled_labels = torch.cat([labels] * len(logits))
        plot_reliability_diagram(
            pooled, pooled_labels, n_bins, from_logits=True, title=name, ax=(axes[0, column], axes[1, column])
        )
    fig.suptitle("New classes (seeds pooled)")
    fig.savefig(path)
    return str(path)


def plot_drift(drift: dict, path) -> str:
    """Mean cosine of the new classes' text features to their zero-shot features, per method, seeds as dots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 * len(drift) + 1.5, 3.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    names = list(drift)
    means = [drift[n]["new_cos_to_zero_shot"] for n in names]
    ax.bar(range(len(names)), means, color=["#7f8c8d" if "+dor" not in n else "#3b6ea8" for n in names])
    for i, name in enumerate(names):
        seeds = drift[name]["per_seed"]
        ax.plot([i] * len(seeds), seeds, "k.", markersize=5)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylim(min(0.5, min(means) - 0.05), 1.01)
    ax.set_ylabel("cos(new-class text feature, zero-shot)")
    ax.set_title("Drift of the new classes' text features")
    fig.savefig(path)
    return str(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m peft_dor.world.demo",
        description="The DOR paper's base-to-new table in miniature, on the shipped world CLIP (see docs/world.md).",
    )
    parser.add_argument("--output_dir", required=True, help="Where results.json and the figures go.")
    parser.add_argument(
        "--methods", nargs="+", default=["coop"], choices=sorted(METHODS), help="Methods to run with and without DOR."
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="Seeds (default 1 2 3).")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="Replace results already in output_dir.")
    parser.add_argument("--model_path", default=None, help="A world CLIP folder (default: the shipped one).")
    parser.add_argument("--epochs", type=int, default=ExperimentConfig.epochs, help="Training epochs per run.")
    parser.add_argument("--no_plots", action="store_true", help="Skip the figures (no matplotlib needed).")
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    return run_demo(
        args.output_dir,
        methods=args.methods,
        seeds=args.seeds,
        overwrite_output_dir=args.overwrite_output_dir,
        model_path=args.model_path,
        plots=not args.no_plots,
        epochs=args.epochs,
    )


if __name__ == "__main__":
    main()
