"""The ``peft-dor`` command: ``train``, ``evaluate`` and ``protocol`` (also ``python -m peft_dor``).

Examples:

    peft-dor train --demo                                   # offline: the paper in miniature (docs/world.md)
    peft-dor train --config coop --dataset dtd --data_root ~/data --seed 1 --output_dir outputs/coop/dtd/seed1
    accelerate launch -m peft_dor train --config maple --dataset dtd --data_root ~/data --bf16
    peft-dor evaluate --adapter outputs/coop/dtd/seed1 --data_dir my_images/ --output_dir eval/
    peft-dor protocol --methods coop kgcoop --data_root ~/data --output_dir runs/b2n

A user mistake (a bad flag, config or data folder) ends in one line naming the flag and the fix, with exit code 2.
"""

from __future__ import annotations

import sys

from .errors import USAGE_EXIT_CODE, UsageError, run_command

COMMANDS = {
    "train": "train a prompt method (with DOR), save the adapter, evaluate it",
    "evaluate": "evaluate a saved adapter (folder or Hub id) on a dataset or image folder",
    "protocol": "run methods x datasets x seeds (resumable) and write the paper's tables",
}

__all__ = ["COMMANDS", "USAGE_EXIT_CODE", "UsageError", "main"]


def _usage() -> str:
    lines = ["usage: peft-dor {train,evaluate,protocol} [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "peft-dor <command> --help lists the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``peft-dor`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else USAGE_EXIT_CODE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"peft-dor: error: unknown command {name!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return USAGE_EXIT_CODE
    if name == "train":
        from .train import main as command
    elif name == "evaluate":
        from .evaluate import main as command
    else:
        from .protocol import main as command
    result = run_command(f"peft-dor {name}", lambda: command(rest))
    return result if isinstance(result, int) else 0
