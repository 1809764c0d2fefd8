"""``peft-dor protocol``: methods x datasets x seeds, resumable, ending with the paper's tables.

Each run is ``peft-dor train`` with the method's shipped config, one dataset and one seed, writing
``<output_dir>/<method>/<dataset>/seed<seed>/results.json``. A finished run is skipped and an interrupted one resumes
from its last checkpoint (``peft-dor train`` does both by itself), so rerunning the same command continues the grid.
Ctrl-C stops the current run gracefully (it saves a checkpoint) and then the grid. At the end every ``results.json``
under ``<output_dir>`` is averaged over seeds and datasets into ``tables.md`` and ``tables.csv`` (base / new / HM
accuracy and ECE; the "Average" row is the HM of the mean base and mean new accuracy, and the ECE "HM" is the
arithmetic mean, as in the published tables).

Examples:

    # base-to-new, CoOp and KgCoOp with DOR, all 11 datasets, seeds 1-3, one GPU per run
    peft-dor protocol --methods coop kgcoop --data_root ~/data --output_dir runs/b2n

    # each run on 4 GPUs
    peft-dor protocol --methods maple --datasets dtd eurosat --data_root ~/data \\
        --launcher "accelerate launch --multi_gpu --num_processes 4" --output_dir runs/b2n

    # the whole grid offline on generated images and a small fitted CLIP (a check of the pipeline)
    peft-dor protocol --demo --seeds 1 2 --output_dir runs/demo

    # list what would run; anything after "--" is passed to every run
    peft-dor protocol --methods coop --dry_run -- --bf16 --no_dor
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .options import CONFIG_DIR, METHOD_NAMES
from .records import RESULTS_FILE


@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    method: str
    dataset: str
    seed: int
    output_dir: str

    @property
    def done(self) -> bool:
        return os.path.exists(os.path.join(self.output_dir, RESULTS_FILE))

    def checkpoint(self) -> str | None:
        """The newest checkpoint of an interrupted run, if any (the run resumes from it by itself)."""
        from ..training.checkpoints import checkpoint_folders

        found = checkpoint_folders(self.output_dir)
        return found[-1] if found else None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (peft-dor protocol --help lists the options)")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    from ..data import BASE_TO_NEW_DATASETS

    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = _Parser(
        prog="peft-dor protocol",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--methods", nargs="+", default=["coop"], choices=METHOD_NAMES, help="methods to run")
    parser.add_argument(
        "--datasets", nargs="+", default=list(BASE_TO_NEW_DATASETS), help="registry names (default: the 11 datasets)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="run seeds (default: 1 2 3)")
    parser.add_argument("--data_root", default=None, help="root of the CoOp folder layout")
    parser.add_argument("--output_dir", default="runs", help="grid folder: <output_dir>/<method>/<dataset>/seed<s>")
    parser.add_argument("--config_dir", default=str(CONFIG_DIR), help="folder of the <method>.yaml configs")
    parser.add_argument(
        "--launcher", default=None, help='command prefix of each run, e.g. "accelerate launch --num_processes 4"'
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the grid offline on generated images (--dataset demo: a pipeline check)",
    )
    parser.add_argument("--dry_run", action="store_true", help="print the commands of unfinished runs and stop")
    parser.add_argument("--tables_only", action="store_true", help="only aggregate the existing results")
    parser.add_argument("--stop_on_error", action="store_true", help="stop at the first failed run")
    args = parser.parse_args(argv)
    args.output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    if args.data_root is not None:
        args.data_root = os.path.abspath(os.path.expanduser(args.data_root))
    if args.demo:
        args.datasets = ["demo"]
    elif args.data_root is None and not (args.tables_only or args.dry_run):
        raise UsageError("--data_root is required (the CoOp folder layout; see docs/data.md), unless --demo.")
    return args, extra


def grid(args: argparse.Namespace) -> list[Run]:
    return [
        Run(method.lower(), dataset, seed, os.path.join(args.output_dir, method.lower(), dataset, f"seed{seed}"))
        for method in args.methods
        for dataset in args.datasets
        for seed in args.seeds
    ]


def command(run: Run, args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The ``peft-dor train`` call of one run (through ``--launcher`` when given)."""
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]
    cmd = [*launcher, "-m", "peft_dor", "train"]
    config = Path(args.config_dir) / f"{run.method}.yaml"
    if config.exists():
        cmd += ["--config", str(config)]
    cmd += ["--method", run.method, "--seed", str(run.seed), "--output_dir", run.output_dir]
    if args.demo:
        cmd += ["--dataset", "demo"]
    else:
        cmd += ["--dataset", run.dataset, "--data_root", str(args.data_root)]
    return cmd + list(extra)


def write_tables(output_dir: str) -> tuple[str, str] | None:
    """Average every ``results.json`` under ``output_dir`` into ``tables.md`` and ``tables.csv``."""
    from .tables import aggregate_results, load_results
    from .tables import write_tables as write

    paths = sorted(glob.glob(os.path.join(output_dir, "**", RESULTS_FILE), recursive=True))
    records = [r for r in load_results(paths) if "base" in r and "new" in r]
    if not records:
        print(f"No base-to-new results under {output_dir}.")
        return None
    table = aggregate_results(records)
    md, csv = write(table, output_dir)
    print(Path(md).read_text())
    print(f"Tables of {len(records)} runs: {md}, {csv}")
    return md, csv


def call_run(cmd: list[str]) -> int:
    """Run one training command; Ctrl-C reaches it (it checkpoints and exits), not this loop (which would kill it)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    runs = grid(args)
    todo = [run for run in runs if not run.done]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to go.")
    failed = []
    if not args.tables_only:
        for i, run in enumerate(todo, 1):
            cmd = command(run, args, extra)
            resume = " (resumes from its last checkpoint)" if run.checkpoint() else ""
            print(f"[{i}/{len(todo)}] {run.method} / {run.dataset} / seed {run.seed}{resume}: {shlex.join(cmd)}")
            sys.stdout.flush()
            if args.dry_run:
                continue
            code = call_run(cmd)
            if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
                print("Interrupted; rerun the same command to continue the grid.", file=sys.stderr)
                return code
            if code != 0:
                failed.append(run)
                print(f"run failed with exit code {code}: {run.output_dir}", file=sys.stderr)
                if args.stop_on_error:
                    break
    if args.dry_run:
        return 0
    write_tables(args.output_dir)
    if failed:
        print(f"{len(failed)} run(s) failed; rerun the same command to retry them.", file=sys.stderr)
        return 1
    return 0
