"""What ``peft-dor train`` writes about a run: file names, ``results.json`` (atomically), library versions, the
hyper-parameters a model card states, and the commands it prints to resume or to evaluate later."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import TrainCommand

RESULTS_FILE = "results.json"
#: written by ``trainer.save_metrics("train", ...)`` once training finished: the adapter next to it is final
TRAIN_RESULTS_FILE = "train_results.json"
ADAPTER_FILE = "adapter_model.safetensors"


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import peft
    import torch
    import transformers

    from .. import __version__

    return {
        "peft_dor": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "python": sys.version.split()[0],
    }


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_json_atomically(path: str, values: Any) -> None:
    # write then rename: a crash never leaves a half-written file that a resumable grid would trust
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, default=_json_default)
    os.replace(partial, path)


def resume_command(command: TrainCommand) -> str:
    return shlex.join(["peft-dor", "train", *command.argv])


def training_summary(command: TrainCommand, global_batch: int) -> dict[str, Any]:
    """The hyper-parameters a model card states."""
    training = command.training
    return {
        "task": command.data.task,
        "shots": command.data.shots,
        "seed": training.seed,
        "epochs": training.num_train_epochs,
        "learning_rate": training.learning_rate,
        "global_batch_size": global_batch,
        "optimizer": command.run.optimizer,
        "scheduler": command.run.scheduler,
    }


def hub_id_of(name_or_path: str) -> str | None:
    """The Hub id of the base model: the name itself, or what a local folder's config records (else None)."""
    if not os.path.isdir(os.path.expanduser(name_or_path)):
        return name_or_path
    try:
        with open(os.path.join(os.path.expanduser(name_or_path), "config.json"), encoding="utf-8") as f:
            recorded = json.load(f).get("_name_or_path")
    except (OSError, ValueError):
        return None
    if recorded and not os.path.isabs(recorded) and not os.path.isdir(recorded) and recorded.count("/") == 1:
        return recorded
    return None


def data_flags(command: TrainCommand) -> str:
    data = command.data
    flags = []
    for flag in ("dataset", "data_root", "data_dir", "dataset_name"):
        value = getattr(data, flag)
        if value is not None and value != "demo":
            flags += [f"--{flag}", str(value)]
    return shlex.join(flags) + " " if flags else ""
