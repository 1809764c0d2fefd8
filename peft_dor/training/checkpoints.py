"""Which checkpoint a run resumes from, and whether it belongs to the same configuration.

Trainer checkpoints (``<output_dir>/checkpoint-<step>``) hold the adapter, the optimiser, the scheduler and the RNG
states; :class:`RunRecordCallback` adds ``peft_dor_run.json`` to each: the settings that decide what is trained
(method, DOR, data, seed, optimiser, ...) and the DOR outlier pool (size and hash of its terms). Resuming compares
that record with the current run and refuses a checkpoint of another configuration, naming the settings that differ:
continuing it would give a model that matches neither run.

Example:
    ```python
    from peft_dor.training.checkpoints import last_complete_checkpoint, record_differences

    checkpoint = last_complete_checkpoint("outputs/coop/dtd/seed1")   # None when there is none
    ```
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .trainer import checkpoint_problems

logger = logging.getLogger(__name__)

RUN_RECORD_NAME = "peft_dor_run.json"
#: settings of each group that change what is trained; everything else (output folders, logging, evaluation) may
#: differ between a run and its resumption
_TRAINING_KEYS = (
    "seed",
    "data_seed",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "global_batch_size",  # added by the caller: processes x per-device batch x accumulation may be split otherwise
    "weight_decay",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "max_grad_norm",
    "bf16",
    "fp16",
)
_IGNORED = {
    "model": {"cache_dir"},
    "data": {"max_eval_samples", "verify_images", "dg_targets", "test_split"},
    "run": {"overwrite_output_dir", "config", "ece_bins", "ece_edge_rule", "mce_variant", "methods"},
}


def training_fingerprint(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The part of a run's settings (``{"model": {...}, "data": {...}, ...}``) that decides what is trained."""
    flat: dict[str, Any] = {}
    for group, values in settings.items():
        if group == "training":
            flat.update({key: values.get(key) for key in _TRAINING_KEYS if key in values})
        elif group in ("model", "data", "dor", "run", "method", "pool"):
            ignored = _IGNORED.get(group, set())
            flat.update({f"{key}": value for key, value in values.items() if key not in ignored})
    return json.loads(json.dumps(flat, default=str))


def record_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"name: saved -> current"`` for each setting both fingerprints record and that differs
    (settings only one side records, such as the DOR pool that exists once training starts, are not compared)."""
    keys = sorted(set(saved) & set(current))
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in keys if saved.get(key) != current.get(key)]


def read_run_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``peft_dor_run.json`` of a checkpoint or output folder, or None when it has none (or it is unreadable)."""
    path = os.path.join(folder, RUN_RECORD_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_run_record(folder: str | os.PathLike, record: Mapping[str, Any]) -> str:
    """Write ``record`` as ``<folder>/peft_dor_run.json`` through a temporary file (never half-written)."""
    path = os.path.join(folder, RUN_RECORD_NAME)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(partial, path)
    return path


def checkpoint_folders(output_dir: str | os.PathLike) -> list[str]:
    """The ``checkpoint-<step>`` folders of ``output_dir``, oldest step first."""
    folder = os.fspath(output_dir)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    steps = sorted(
        (int(name.rsplit("-", 1)[1]), name)
        for name in names
        if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.rsplit("-", 1)[1].isdigit()
    )
    return [os.path.join(folder, name) for _, name in steps if os.path.isdir(os.path.join(folder, name))]


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint whose writing finished (adapter weights and ``trainer_state.json``), or None."""
    for path in reversed(checkpoint_folders(output_dir)):
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning("Skipping the incomplete checkpoint %s (%s).", path, "; ".join(problems))
    return None


def checkpoint_step(path: str | os.PathLike) -> int:
    """The global step a checkpoint was written at (from ``trainer_state.json``)."""
    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as handle:
        return int(json.load(handle).get("global_step", 0))


class RunRecordCallback(TrainerCallback):
    """Write the run's record into every checkpoint Trainer saves (on the process that saves).

    Args:
        record: the fingerprint (see :func:`training_fingerprint`).
        extra: called at each save for more entries (the DOR pool, which exists only once training started).
    """

    def __init__(self, record: Mapping[str, Any], extra: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.record = dict(record)
        self.extra = extra

    def current(self) -> dict[str, Any]:
        return {**self.record, **(dict(self.extra()) if self.extra is not None else {})}

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                write_run_record(folder, self.current())
        return control
