"""``peft-dor evaluate``: a saved adapter (folder or Hub id) on a dataset or image folder.

Prints accuracy and calibration (ECE, MCE, ACE, NLL, Brier) and writes ``results.json`` and the reliability diagram
``reliability_<split>.png`` into ``--output_dir``. The adapter classifies among the data's classes (its prompts are
class-agnostic, so any class list works: this is how new classes are scored).

Example:

    peft-dor evaluate --adapter outputs/coop/dtd/seed1 --dataset dtd --data_root ~/data --output_dir eval/dtd
    peft-dor evaluate --adapter user/coop-dor-dtd --data_dir my_images/ --output_dir eval/mine
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .errors import UsageError, usage_errors
from .output import logger, setup_output
from .preflight import check_data, check_model_source, load_splits

RESULTS_FILE = "results.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (peft-dor evaluate --help lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="peft-dor evaluate", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--adapter", required=True, help="Adapter folder (save_pretrained) or Hub id.")
    parser.add_argument(
        "--model_name_or_path", default=None, help="Base CLIP (default: the one the adapter config records)."
    )
    parser.add_argument("--dataset", default=None, help="Benchmark name (template and class-name clean-ups).")
    parser.add_argument("--data_root", default=None, help="Root of the CoOp folder layout (with --dataset).")
    parser.add_argument("--data_dir", default=None, help="An image folder with a test/ (or val/) split.")
    parser.add_argument("--dataset_name", default=None, help="A Hub dataset id.")
    parser.add_argument("--dataset_config_name", default=None, help="Configuration of the Hub dataset.")
    parser.add_argument("--image_column", default=None, help="Image column (default: the first Image one).")
    parser.add_argument("--label_column", default=None, help="Label column (default: the first ClassLabel one).")
    parser.add_argument("--test_split", default=None, help="Split to test on (default: 'test', else 'validation').")
    parser.add_argument("--output_dir", default=None, help="Where results.json and the diagram go (default: print).")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="Replace results in --output_dir.")
    parser.add_argument("--batch_size", type=int, default=64, help="Images per forward.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Test on at most this many images.")
    parser.add_argument("--ece_bins", type=int, default=10, help="Bins of ECE/MCE/ACE.")
    parser.add_argument("--ece_edge_rule", default="standard", choices=("standard", "lab"), help="Bin edges.")
    parser.add_argument("--mce_variant", default="standard", choices=("standard", "weighted"), help="MCE variant.")
    parser.add_argument(
        "--verify_images",
        default=None,
        type=lambda v: v.lower() in ("1", "true", "yes"),
        help="Decode every image first (default: on below 5000 images).",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu).")
    return parser


def adapter_config(adapter: str):
    """The adapter's PEFT config (a folder with ``adapter_config.json`` or a Hub id)."""
    from peft import PeftConfig

    import peft_dor  # noqa: F401 - registers the methods, so PeftConfig knows their types

    folder = os.path.expanduser(adapter)
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "adapter_config.json")):
        raise UsageError(
            f"--adapter {adapter}: the folder has no adapter_config.json; give the --output_dir of "
            "`peft-dor train` or a folder written by model.save_pretrained."
        )
    try:
        return PeftConfig.from_pretrained(os.path.expanduser(adapter))
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--adapter {adapter}: cannot be loaded ({first}); give an adapter folder or Hub id."
        ) from None


def _check(args) -> None:
    for flag in ("batch_size", "ece_bins", "max_eval_samples"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag} {value}: must be >= 1.")
    if (
        args.output_dir
        and os.path.exists(os.path.join(args.output_dir, RESULTS_FILE))
        and not args.overwrite_output_dir
    ):
        raise UsageError(
            f"--output_dir {args.output_dir} already holds {RESULTS_FILE}; choose another folder or pass "
            "--overwrite_output_dir."
        )


def load_test_split(args):
    """The split to score, with prompt-ready class names; checked like training data (no empty class, ...)."""
    from ..data import prepare_splits
    from ..data.loaders import load_image_folder

    args.task, args.shots = "few_shot", 0
    if args.data_dir:
        with usage_errors(f"data {args.data_dir}"):
            folder = load_image_folder(args.data_dir)
            name = args.test_split or next((s for s in ("test", "validation", "val", "train") if s in folder), None)
            if name not in folder:
                raise UsageError(f"--test_split {name}: not in {args.data_dir} (it has {', '.join(folder)}).")
            splits = prepare_splits({"train": folder[name], "test": folder[name]}, args.dataset)
    else:
        splits = load_splits(args, argparse.Namespace(cache_dir=None))
    test = splits["test"]
    check_data({"test": test, "train": test}, args)
    return test


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run ``peft-dor evaluate``; returns the results dict."""
    args = build_parser().parse_args(argv)
    _check(args)
    setup_output()
    config = adapter_config(args.adapter)
    base = args.model_name_or_path or config.base_model_name_or_path
    if not base:
        raise UsageError(f"--adapter {args.adapter}: records no base model; give --model_name_or_path.")
    check_model_source(base)
    test = load_test_split(args)

    import torch
    from peft import PeftModel

    from ..data import CLIPImageTransform, load_image_processor, with_clip_transform
    from ..evaluation import evaluate_split
    from .build import load_base_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with usage_errors(f"--adapter {args.adapter}"):
        model = PeftModel.from_pretrained(load_base_model(base), os.path.expanduser(args.adapter))
    model = model.to(device).eval()
    if args.max_eval_samples is not None and len(test) > args.max_eval_samples:
        test = test.shuffle(seed=0).select(range(args.max_eval_samples))
    names = list(test.features["label"].names)
    dataset = with_clip_transform(test, CLIPImageTransform(load_image_processor(base), train=False))
    report = {"edge_rule": args.ece_edge_rule, "mce_variant": args.mce_variant}
    evaluation = evaluate_split(
        model,
        dataset,
        names,
        n_bins=args.ece_bins,
        report_kwargs=report,
        batch_size=args.batch_size,
        device=device,
        desc="Evaluating test",
    )
    source = args.data_dir or args.data_root or args.dataset_name
    results = {
        "adapter": args.adapter,
        "model_name_or_path": base,
        "data": source,
        "dataset": args.dataset,
        "class_names": names,
        "test": evaluation.metrics,
    }
    print(f"\n{args.adapter} on {args.dataset or source} ({len(test)} images, {len(names)} classes), values in %:")
    for key in ("accuracy", "ece", "mce", "ace", "brier"):
        if key in evaluation.metrics:
            print(f"{key:<10} {100 * float(evaluation.metrics[key]):7.2f}")
    if "nll" in evaluation.metrics:
        print(f"{'nll':<10} {float(evaluation.metrics['nll']):7.3f} (nats)")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        evaluation.plot(os.path.join(args.output_dir, "reliability_test.png"), title="test", n_bins=args.ece_bins)
        partial = os.path.join(args.output_dir, RESULTS_FILE + ".partial")
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=float)
        os.replace(partial, os.path.join(args.output_dir, RESULTS_FILE))
        logger.info("wrote %s and reliability_test.png to %s", RESULTS_FILE, args.output_dir)
    return results
