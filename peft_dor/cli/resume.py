"""What ``peft-dor train`` does with what its ``--output_dir`` already holds: resume from the last complete
checkpoint, evaluate a trained adapter, return a finished run, or refuse a folder of another run (naming the settings
that differ and the flag that overrides)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .output import logger
from .records import RESULTS_FILE, TRAIN_RESULTS_FILE

if TYPE_CHECKING:
    from .options import TrainCommand


@dataclasses.dataclass
class OutputPlan:
    """What to do in the output folder: resume from ``checkpoint``, only evaluate a finished adapter, or start."""

    checkpoint: str | None = None
    evaluate_only: bool = False
    finished: dict[str, Any] | None = None


def _refuse_other_run(where: str, saved: dict[str, Any], fingerprint: dict[str, Any], output_dir: str) -> None:
    from ..training.checkpoints import record_differences

    differences = record_differences(saved, fingerprint)
    if differences:
        shown = "; ".join(differences[:6]) + (" ..." if len(differences) > 6 else "")
        raise UsageError(
            f"{where} belongs to a run with other settings ({shown}); use another --output_dir, or "
            f"--overwrite_output_dir to discard it ({output_dir})."
        )


def plan_output_dir(command: TrainCommand, fingerprint: dict[str, Any]) -> OutputPlan:
    """Decide between resuming, evaluating a trained adapter, refusing, or starting; see the module doc."""
    from ..training.checkpoints import (
        checkpoint_folders,
        checkpoint_problems,
        last_complete_checkpoint,
        read_run_record,
    )
    from ..training.checkpoints import training_fingerprint as fingerprint_of

    output_dir = command.training.output_dir
    if command.run.overwrite_output_dir:
        if command.training.should_save and os.path.isdir(output_dir):
            for folder in checkpoint_folders(output_dir):  # else Trainer's rotation would delete the new ones
                shutil.rmtree(folder, ignore_errors=True)
            for name in (RESULTS_FILE, TRAIN_RESULTS_FILE):
                if os.path.exists(os.path.join(output_dir, name)):
                    os.remove(os.path.join(output_dir, name))
        return OutputPlan()
    results_path = os.path.join(output_dir, RESULTS_FILE)
    if os.path.exists(results_path):
        try:
            with open(results_path, encoding="utf-8") as f:
                finished = json.load(f)
        except (OSError, ValueError):
            finished = {}
        saved = fingerprint_of(finished.get("settings") or {})
        if not saved:
            raise UsageError(
                f"--output_dir {output_dir} already holds results ({results_path}); use another --output_dir, or "
                "--overwrite_output_dir to replace them."
            )
        _refuse_other_run(f"The finished run in {output_dir}", saved, fingerprint, output_dir)
        return OutputPlan(finished=finished)
    top_record = read_run_record(output_dir)
    if top_record is not None and os.path.exists(os.path.join(output_dir, TRAIN_RESULTS_FILE)):
        _refuse_other_run(f"The trained adapter in {output_dir}", top_record, fingerprint, output_dir)
        return OutputPlan(evaluate_only=True)

    requested = command.training.resume_from_checkpoint
    flag = str(requested).strip().lower() if requested is not None else None
    if flag in ("false", "0", "no", "none"):
        if checkpoint_folders(output_dir):
            raise UsageError(
                f"--resume_from_checkpoint false but {output_dir} holds checkpoints; drop the flag to resume, or give "
                "--overwrite_output_dir to start again."
            )
        return OutputPlan()
    if flag in (None, "true", "1", "yes"):
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None and flag is not None:
            raise UsageError(
                f"--resume_from_checkpoint true but {output_dir} holds no complete checkpoint; drop the flag to start."
            )
    else:
        checkpoint = os.path.expanduser(str(requested))
        if not os.path.isdir(checkpoint):
            raise UsageError(f"--resume_from_checkpoint {requested}: no such checkpoint folder.")
        problems = checkpoint_problems(checkpoint)
        if problems:
            raise UsageError(
                f"--resume_from_checkpoint {requested}: incomplete checkpoint ({'; '.join(problems)}); give an "
                "earlier one, or 'true' for the last complete one."
            )
    if checkpoint is None:
        return OutputPlan()
    record = read_run_record(checkpoint)
    if record is None:
        logger.warning("%s has no %s; its settings cannot be checked against this run.", checkpoint, "run record")
    else:
        _refuse_other_run(f"The checkpoint {checkpoint}", record, fingerprint, output_dir)
    return OutputPlan(checkpoint=checkpoint)
