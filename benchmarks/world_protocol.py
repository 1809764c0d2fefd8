"""The DOR paper's tables in miniature, on the shipped world CLIP: ``python benchmarks/world_protocol.py``.

Runs on the world's base-to-new split (10 base / 10 new red nouns, 16 shots, seeds 1 2 3), with the demo's
hyper-parameters (``peft_dor.world.experiment.ExperimentConfig``):

* **Table 1 in miniature**: zero-shot; CoOp, KgCoOp, MaPLe and TCP, each with and without DOR; and, as the post-hoc
  baseline, each method without DOR followed by temperature scaling fitted on the seed's base-class validation shots
  (4 per class) and applied to base and new.
* **The outlier ablation** (CoOp + DOR): the pool from the nearest nouns (the default), the farthest, a random subset,
  and the oracle (the new classes themselves as the vocabulary).

Writes ``benchmarks/results/world_protocol.json`` (every run and the summaries) and ``world_protocol.md`` (the
tables). ``--backbone siglip`` runs the same on the shipped world SigLIP (``peft_dor.world.world_siglip_path``) and
writes ``world_protocol_siglip.json`` / ``.md``. ``--quick`` runs one seed with few epochs to check that the script
works.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

from peft_dor.metrics import apply_temperature, fit_temperature
from peft_dor.world import load_world, world_clip_path, world_siglip_path
from peft_dor.world.experiment import (
    ExperimentConfig,
    format_table,
    split_metrics,
    summarise,
    test_data,
    train_and_evaluate,
    zero_shot_logits,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
METHODS = ("coop", "kgcoop", "maple", "tcp")
#: --backbone: (the shipped world model's folder, the results files' stem, the model's name in their title)
BACKBONES = {
    "clip": (world_clip_path, "world_protocol", "world CLIP"),
    "siglip": (world_siglip_path, "world_protocol_siglip", "world SigLIP"),
}


def _entry(name: str, seed: int, base_logits, new_logits, task, config, drift=None) -> dict:
    row = {
        "method": name,
        "seed": seed,
        "base": split_metrics(base_logits, task.base_test.labels, config.n_bins),
        "new": split_metrics(new_logits, task.new_test.labels, config.n_bins),
    }
    if drift is not None:
        row["new_cos_to_zero_shot"] = float(sum(drift) / len(drift))
    return row


TABLE_PART, ABLATION_PART = "table", "ablation"


def run(
    seeds,
    config: ExperimentConfig,
    methods=METHODS,
    parts=(TABLE_PART, ABLATION_PART),
    log=print,
    save=None,
    path: str | None = None,
):
    """Train and evaluate every run of ``parts`` on the world model at ``path`` (default the world CLIP);
    ``save(runs)`` is called after each run (partial results survive)."""
    from transformers import AutoModel, AutoTokenizer

    path = path or world_clip_path()
    world = load_world(path)
    task = test_data(world, config)
    clip = AutoModel.from_pretrained(path).eval()  # CLIPModel or SiglipModel, as config.json names
    tokenizer = AutoTokenizer.from_pretrained(path)
    zs_base = zero_shot_logits(clip, tokenizer, task.split.base, task.base_test)
    zs_new = zero_shot_logits(clip, tokenizer, task.split.new, task.new_test)
    runs = [_entry("zero_shot", s, zs_base, zs_new, task, config, [1.0]) for s in seeds]
    start = time.time()

    def train(name, method, seed, dor):
        result = train_and_evaluate(path, world, task, method, seed, config, dor)
        runs.append(
            _entry(name, seed, result.base_logits, result.new_logits, task, config, result.new_cos_to_zero_shot)
        )
        log(f"{name:>22} seed {seed}: new ECE {100 * runs[-1]['new']['ece']:.1f}  ({time.time() - start:.0f} s)")
        if save is not None:
            save(runs)
        return result

    if TABLE_PART in parts:
        for method in methods:
            for seed in seeds:
                plain = train(method, method, seed, None)
                temperature = fit_temperature(plain.base_val_logits, plain.base_val_labels, from_logits=True)
                base, new = (apply_temperature(x, temperature) for x in (plain.base_logits, plain.new_logits))
                runs.append({**_entry(f"{method}+ts", seed, base, new, task, config), "temperature": temperature})
                train(f"{method}+dor", method, seed, {})
    if ABLATION_PART in parts:
        ablation = {
            "far": {"selection": "far"},
            "random": {"selection": "random"},
            "oracle": {"vocabulary": task.split.new},
        }
        for label, dor in ablation.items():
            for seed in seeds:
                train(f"coop+dor ({label})", "coop", seed, dor)
    return runs, {**config.to_dict(), "seeds": list(seeds), "split": vars(task.split), "model": type(clip).__name__}


def summaries(runs: list[dict]) -> tuple[dict, dict]:
    """The Table-1 summary and the ablation summary of whichever runs are present."""
    present = {r["method"] for r in runs}
    table = ["zero_shot", *[f"{m}{s}" for m in METHODS for s in ("", "+ts", "+dor")]]
    ablation = ["coop", "coop+dor", *[f"coop+dor ({label})" for label in ("far", "random", "oracle")]]
    return (
        summarise(runs, [n for n in table if n in present]),
        summarise(runs, [n for n in ablation if n in present]),
    )


def merge(paths) -> dict:
    """One result from several part files (the same config and seeds; zero-shot rows are taken once)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs, seen = [], set()
    for part in parts:
        for row in part["runs"]:
            key = (row["method"], row["seed"])
            if key not in seen:
                seen.add(key)
                runs.append(row)
    table, ablation = summaries(runs)
    seconds = sum(part.get("seconds", 0.0) for part in parts)
    return {"table": table, "ablation": ablation, "runs": runs, "config": parts[0]["config"], "seconds": seconds}


def write(results: dict, backbone: str = "clip") -> None:
    _, stem, model_name = BACKBONES[backbone]
    RESULTS_DIR.mkdir(exist_ok=True)
    results["machine"] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    seeds = results["config"]["seeds"]
    text = [
        f"# The paper's tables in miniature ({model_name})",
        "",
        f"Generated by `python benchmarks/world_protocol.py{'' if backbone == 'clip' else ' --backbone ' + backbone}` "
        f"on {results['machine']['date']} "
        f"({results['seconds']:.0f} s, seeds {seeds}). % mean ± sd over seeds; ECE with "
        f'{results["config"]["n_bins"]} bins; the ECE "HM" column is the arithmetic mean of base and new, as in the '
        "paper. `+ts`: temperature scaling fitted on base validation shots.",
        "",
        "```",
        format_table(results["table"], "Table 1 in miniature"),
        "```",
        "",
        "```",
        format_table(results["ablation"], "Outlier ablation (CoOp + DOR)"),
        "```",
        "",
    ]
    (RESULTS_DIR / f"{stem}.md").write_text("\n".join(text))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbone", default="clip", choices=sorted(BACKBONES), help="The shipped world model to run."
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--parts", nargs="+", default=[TABLE_PART, ABLATION_PART], choices=[TABLE_PART, ABLATION_PART])
    parser.add_argument("--part_file", default=None, help="Write this part's runs here (for --merge) instead.")
    parser.add_argument("--merge", nargs="+", default=None, help="Combine part files into the results files.")
    parser.add_argument("--quick", action="store_true", help="One seed, 2 epochs: checks the script, not the result.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1: fastest here).")
    args = parser.parse_args(argv)
    if args.merge:
        results = merge(args.merge)
    else:
        options = {"threads": args.threads}
        seeds = args.seeds
        if args.quick:
            options.update(epochs=2, test_per_class=10)
            seeds = seeds[:1]
        config = ExperimentConfig(**options)
        start = time.time()
        holder = {}

        def save(runs):
            if args.part_file:
                holder.update(runs=runs, seconds=round(time.time() - start, 1))
                Path(args.part_file).write_text(json.dumps({**holder, "config": holder.get("config")}, indent=1))

        path = BACKBONES[args.backbone][0]()
        runs, run_config = run(seeds, config, args.methods, args.parts, save=save, path=path)
        holder["config"] = run_config
        save(runs)
        table, ablation = summaries(runs)
        results = {"table": table, "ablation": ablation, "runs": runs, "config": run_config}
        results["seconds"] = round(time.time() - start, 1)
        if args.quick or args.part_file:
            print(format_table(table, "Table 1 in miniature"))
            return results
    write(results, args.backbone)
    print(format_table(results["table"], "Table 1 in miniature"))
    print(format_table(results["ablation"], "Outlier ablation (CoOp + DOR)"))
    return results


if __name__ == "__main__":
    main()
