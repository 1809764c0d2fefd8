"""The parser of ``peft-dor train``: the library's option groups (:mod:`peft_dor.cli.options`), the method's config
fields and ``TrainingArguments``, merged with a YAML ``--config`` and checked into a :class:`TrainCommand`.

Every flag can also be a key of a YAML ``--config`` file (a path, or the name of a shipped config such as ``coop``);
the command line wins over the file, the file over the defaults. ``--help`` lists the library's options and the most
used training flags; ``--help_all`` adds every other ``transformers.TrainingArguments`` flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from ..registry import METHODS, method_classes, method_spec
from .errors import UsageError
from .options import (
    CONFIG_DIR,
    METHOD_NAMES,
    DataArguments,
    DORArguments,
    ModelArguments,
    RunArguments,
    TrainCommand,
)

#: TrainingArguments flags listed by ``--help``; ``--help_all`` shows the other ~100
COMMON_TRAINING_FLAGS = (
    "output_dir",
    "seed",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "bf16",
    "logging_steps",
    "save_strategy",
    "save_total_limit",
    "resume_from_checkpoint",
    "dataloader_num_workers",
    "use_cpu",
    "disable_tqdm",
    "push_to_hub",
    "hub_model_id",
)


# Fields every PEFT config has, and fields the command fills itself: not exposed as method flags.
_NOT_METHOD_FLAGS = {
    "class_names",
    "template",
    "peft_type",
    "task_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
}
#: defaults of the command that differ from TrainingArguments' (checkpoints each epoch, two kept; seed 1; no
#: gradient clipping, as the official prompt-tuning trainers, where TrainingArguments clips at norm 1)
TRAINING_DEFAULTS: dict[str, Any] = {
    "max_grad_norm": 0.0,
    "remove_unused_columns": False,
    "report_to": "none",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 10,
    "seed": 1,
}
DEMO_DEFAULTS: dict[str, Any] = {
    "method": "coop",
    "dataset": "demo",
    "task": "base_to_new",
    "shots": 16,
    "n_ctx": 4,
    "num_train_epochs": 6,
    "global_batch_size": 16,
    "per_device_eval_batch_size": 40,
    "learning_rate": 0.01,
    "logging_steps": 5,
    "seed": 1,
    "dor": True,
    "dor_weight": 8.0,
    "dor_pool_size": 24,
    "output_dir": "demo_output",
    "dataloader_num_workers": 0,
}


USAGE = (
    "peft-dor train [--config FILE|NAME] [--method NAME] (--data_dir DIR | --dataset NAME --data_root DIR | "
    "--dataset_name ID | --demo) [--output_dir DIR] [options]"
)


@dataclass
class CommandTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with its own ``--help`` section, listed after the library's options."""

    _argument_group_name = "training (transformers TrainingArguments; --help_all lists every flag)"


class CommandParser:
    """``HfArgumentParser`` whose mistakes are one-line :class:`UsageError`\\ s instead of usage dumps."""

    def __new__(cls, dataclass_types, prog: str, description: str | None = None):
        from transformers import HfArgumentParser

        class _Parser(HfArgumentParser):
            def error(self, message):  # argparse prints the whole usage (~150 flags) before the message
                raise UsageError(f"{message} (peft-dor train --help lists the options)")

        return _Parser(dataclass_types, prog=prog, description=description, usage=USAGE, allow_abbrev=False)


def _flag_type(hint: Any) -> Any:
    """The type HfArgumentParser can take for a config field, or None when it has no command-line form."""
    simple = (int, float, str, bool)
    if hint in simple:
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and (rest[0] in simple or typing.get_origin(rest[0]) is list):
            return hint
    if origin is list and args and args[0] in simple:
        return hint
    return None


def method_options_class(config_cls: type, taken: set[str]) -> type:
    """A dataclass of the method config's fields that have a command-line form (the rest: --method_config)."""
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        if f.name in _NOT_METHOD_FLAGS or f.name in taken or not f.init or _flag_type(hints.get(f.name)) is None:
            continue
        if f.default is not dataclasses.MISSING:
            spec = field(default=f.default, metadata=dict(f.metadata))
        elif f.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=f.default_factory, metadata=dict(f.metadata))
        else:
            continue
        specs.append((f.name, hints[f.name], spec))
    options = dataclasses.make_dataclass(f"{config_cls.__name__}Options", specs)
    options._argument_group_name = f"method ({config_cls.__name__})"
    return options


def resolve_config_path(value: str) -> Path:
    """A ``--config`` value: an existing YAML file, or the name of a shipped config (``coop``)."""
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{value.lower().removeprefix('dor_')}.yaml"
    if shipped.is_file():
        return shipped
    raise UsageError(
        f"--config {value}: no such file. Give a YAML file or a shipped config name ({', '.join(METHOD_NAMES)})."
    )


def load_yaml(path: Path) -> dict[str, Any]:
    """The flags of a YAML config file; malformed files are a :class:`UsageError` naming the file and line."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise UsageError(f"--config {path}: not valid YAML{where}: {problem}; fix the file.") from None
    except OSError as error:
        raise UsageError(f"--config {path}: cannot be read ({error.strerror}).") from None
    if not isinstance(values, dict):
        raise UsageError(
            f"--config {path}: expected a mapping of flag names to values, got {type(values).__name__}; write one "
            "'flag: value' per line."
        )
    return values


def resolve_method(name: str) -> str:
    key = str(name).upper().removeprefix("DOR_")
    if key not in METHODS:
        raise UsageError(f"--method {name}: unknown method; choose one of {', '.join(METHOD_NAMES)}.")
    return key


def has_accelerator() -> bool:
    # Without a GPU, Trainer only runs DDP (gloo) under `accelerate launch` / torchrun when use_cpu=True.
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _pre_parse(argv: list[str]) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument("--method")
    pre.add_argument("--demo", nargs="?", const="true", default=None)
    pre.add_argument("--dataset")
    pre.add_argument("--help_all", "--help-all", action="store_true")
    pre.add_argument("--methods", nargs="+")
    known, _ = pre.parse_known_args(argv)
    return known


def _hide_rare_training_flags(parser, training_cls) -> None:
    names = {f.name for f in dataclasses.fields(training_cls)}
    for action in parser._actions:
        if action.dest in names and action.dest not in COMMON_TRAINING_FLAGS:
            action.help = argparse.SUPPRESS


def parse_train_args(argv: list[str] | None = None, prog: str = "peft-dor train") -> TrainCommand:
    """Parse the command line and the YAML config of ``peft-dor train``.

    Raises:
        UsageError: an unknown flag or config key, a malformed config, a value of the wrong type or out of range.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known = _pre_parse(argv)
    demo = known.demo is not None and known.demo.lower() in ("true", "1", "yes")
    generated = demo or known.dataset == "demo"  # the generated-data check run takes the same quick defaults
    config_path = resolve_config_path(known.config) if known.config else None
    method = known.method or ((known.methods or ["coop"])[0] if demo else None)
    if config_path is None:
        default = CONFIG_DIR / f"{(method or 'coop').lower().removeprefix('dor_')}.yaml"
        config_path = default if default.exists() and not generated else None
    file_values = load_yaml(config_path) if config_path else {}
    method_key = resolve_method(method or file_values.get("method", "coop"))
    config_cls = method_classes(method_key)[0]
    training_options_cls = method_spec(method_key).options  # e.g. PromptSRC's prompt-aggregation schedule

    fixed = (ModelArguments, DataArguments, DORArguments, RunArguments, CommandTrainingArguments)
    if training_options_cls is not None:
        fixed = (*fixed, training_options_cls)
    taken = {f.name for cls in fixed for f in dataclasses.fields(cls)}
    options_cls = method_options_class(config_cls, taken)
    description = (
        "Train a CLIP prompt-tuning method (with DOR) on few-shot data, save the adapter, evaluate accuracy and "
        "calibration. Checkpoints are written each epoch; rerunning the same command resumes. "
        "--help_all lists every transformers TrainingArguments flag."
    )
    parser = CommandParser((*fixed, options_cls), prog=prog, description=description)
    if not known.help_all:
        _hide_rare_training_flags(parser, CommandTrainingArguments)
    parser.add_argument("--help_all", "--help-all", action="help", help="Show every option, then exit.")
    known_flags = {action.dest for action in parser._actions}
    unknown = sorted(set(file_values) - known_flags)
    if unknown:
        raise UsageError(
            f"--config {config_path}: unknown key(s) {', '.join(unknown)}; keys are flags without '--' "
            f"(peft-dor train --method {method_key.lower()} --help_all lists them)."
        )
    defaults: dict[str, Any] = {**TRAINING_DEFAULTS, "use_cpu": not has_accelerator(), **file_values}
    defaults["method"] = method_key.lower()
    defaults["config"] = str(config_path) if config_path else None
    if generated:
        defaults.update({**DEMO_DEFAULTS, "method": method_key.lower()})
    parser.set_defaults(**defaults)
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if namespace.output_dir in (None, ""):
        namespace.output_dir = os.path.join(
            "outputs", namespace.method, namespace.dataset or "data", f"shots{namespace.shots}_seed{namespace.seed}"
        )
    outputs = []
    for dtype in parser.dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        values = {k: v for k, v in vars(namespace).items() if k in names}
        try:
            outputs.append(dtype(**values))
        except ValueError as error:  # TrainingArguments checks combinations; a method's options check values
            raise UsageError(" ".join(str(error).split())) from None
    method_training = outputs.pop(5) if training_options_cls is not None else None
    model_args, data_args, dor_args, run_args, training_args, options = outputs
    run_args.demo = demo or run_args.demo
    run_args.config = str(config_path) if config_path else None  # the file read, also when named by method
    flags = {a.split("=", 1)[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    if "per_device_train_batch_size" in flags and "global_batch_size" not in flags:
        run_args.global_batch_size = None  # an explicit per-device batch on the command line wins over the config
    command = TrainCommand(
        model_args,
        data_args,
        dor_args,
        run_args,
        training_args,
        options,
        method_training,
        config_cls,
        argv,
        flags | set(file_values),
    )
    check_values(command)
    return command


def parse_method_config(value: Any) -> dict[str, Any]:
    """``--method_config``: a JSON object (or, from YAML, a mapping)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"--method_config: not valid JSON ({error.msg} at character {error.pos}); give an object such as "
            '\'{"prec": "fp32"}\'.'
        ) from None
    if not isinstance(parsed, dict):
        raise UsageError(f"--method_config: expected a JSON object, got {type(parsed).__name__}.")
    return parsed


def _at_least(value: Any, bound: float, flag: str, fix: str | Callable[[], str], strict: bool = False) -> None:
    """Refuse ``--flag value`` below ``bound``; ``fix`` may be a callable, evaluated only for the error."""
    if value is None:
        return
    if value < bound or (strict and value == bound):
        relation = ">" if strict else ">="
        raise UsageError(f"--{flag} {value}: must be {relation} {bound:g}; {fix() if callable(fix) else fix}.")


def _shipped_value_hint(method: str, flag: str) -> str:
    """``"the shipped --config coop uses 0.002"``: the fix a range error suggests, read from the method's config."""
    path = CONFIG_DIR / f"{str(method).lower().removeprefix('dor_')}.yaml"
    value = load_yaml(path).get(flag) if path.is_file() else None
    return f"the shipped --config {path.stem} uses {value}" if value is not None else "use a positive value"


def check_values(command: TrainCommand) -> None:
    """Range checks of the numeric flags (types and choices are argparse's)."""
    data, dor, run, training = command.data, command.dor, command.run, command.training
    _at_least(data.shots, 0, "shots", "use 0 for all training images")
    _at_least(data.max_eval_samples, 1, "max_eval_samples", "leave it unset to test on every image")
    _at_least(dor.dor_weight, 0, "dor_weight", "use --no_dor to train without DOR")
    _at_least(dor.dor_pool_size, 1, "dor_pool_size", "the protocol uses 5000")
    _at_least(dor.dor_num_outliers, 1, "dor_num_outliers", "leave it unset for one outlier per training class")
    _at_least(run.global_batch_size, 1, "global_batch_size", "the protocol uses 32")
    _at_least(run.ece_bins, 1, "ece_bins", "the published tables use 10")
    _at_least(training.num_train_epochs, 0, "num_train_epochs", "the protocol trains 5 to 200 epochs", strict=True)
    _at_least(
        training.learning_rate,
        0,
        "learning_rate",
        lambda: _shipped_value_hint(run.method, "learning_rate"),
        strict=True,
    )
    _at_least(training.per_device_train_batch_size, 1, "per_device_train_batch_size", "or set --global_batch_size")
    if "{}" not in (dor.dor_template or ""):
        raise UsageError(f"--dor_template {dor.dor_template!r}: needs one '{{}}' where the outlier word goes.")
    if data.template is not None and "{}" not in data.template:
        raise UsageError(f"--template {data.template!r}: needs one '{{}}' where the class name goes.")
    if run.methods and not run.demo:
        raise UsageError("--methods only applies with --demo; train one method at a time with --method.")
    parse_method_config(run.method_config)
