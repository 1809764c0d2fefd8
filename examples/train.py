#!/usr/bin/env python
# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Train a CLIP prompt-tuning method (optionally with DOR) on a few-shot benchmark and evaluate it.

The paper's protocol as one command: few-shot sampling with a seed, base-to-new (train on the base classes, test on
base and new), domain generalisation, or few-shot on all classes; the protocol's optimiser and schedule; accuracy and
calibration (ECE, MCE, ACE, NLL, Brier) with reliability diagrams; the adapter saved with a model card.

Examples:

    # everything offline on a tiny CLIP and generated images, < 2 minutes on 2 CPU cores
    python examples/train.py --demo

    # CoOp + DOR on DTD (CoOp folder layout under ~/data), seed 1, the protocol's hyper-parameters
    python examples/train.py --config examples/configs/coop.yaml --dataset dtd --data_root ~/data --seed 1 \\
        --output_dir outputs/coop/dtd/seed1

    # the same on 4 GPUs with bf16 (global batch stays 32)
    accelerate launch --multi_gpu --num_processes 4 examples/train.py --config examples/configs/coop.yaml \\
        --dataset dtd --data_root ~/data --seed 1 --bf16 --output_dir outputs/coop/dtd/seed1

Every flag can also be a key of the ``--config`` YAML file; the command line wins over the file, the file over the
defaults. Without ``--config``, ``examples/configs/<method>.yaml`` is used when it exists. ``--help`` lists every
option, including the chosen method's own (``--method maple --help``).

Writes ``<output_dir>/results.json`` (top level ``base``, ``new``, ``hm``, each with ``accuracy`` and ``ece`` as
fractions), ``reliability_base.png`` and ``reliability_new.png``, the adapter (``adapter_config.json``,
``adapter_model.safetensors``) and a model card (``README.md``). An output directory that already holds results is
never overwritten unless ``--overwrite_output_dir`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import peft_dor
from peft_dor.registry import METHODS, method_classes

logger = logging.getLogger("peft_dor.train")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RESULTS_FILE = "results.json"
TASKS = ("base_to_new", "few_shot", "domain_generalization")


# ---------------------------------------------------------------------------------------------------- arguments
@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch16",
        metadata={"help": "CLIP checkpoint (Hub id or local folder) with its tokenizer and image processor."},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of the checkpoint."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})


@dataclass
class DataArguments:
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Benchmark name from the registry (dtd, eurosat, imagenet, ...; see docs/data.md) or any name "
            "for other data. Selects the template and class-name clean-ups."
        },
    )
    data_root: str | None = field(
        default=None, metadata={"help": "Root of the CoOp folder layout (<data_root>/dtd/images + split_zhou_*.json)."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A local image folder with train/ and test/ sub-folders, one folder per class."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id (loaded with datasets)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first Image one)."})
    label_column: str | None = field(
        default=None, metadata={"help": "Label column (default: the first ClassLabel one)."}
    )
    test_split: str | None = field(
        default=None, metadata={"help": "Split to test on (default: 'test' if labelled, else 'validation')."}
    )
    task: str = field(
        default="base_to_new",
        metadata={
            "help": "base_to_new (train on base, test on base and new), few_shot (all classes) or "
            "domain_generalization (train on --dataset, test on --dg_targets).",
            "choices": TASKS,
        },
    )
    shots: int = field(default=16, metadata={"help": "Training images per class (< 1: all)."})
    template: str | None = field(
        default=None, metadata={"help": "Hand-crafted template with one '{}'; default: the dataset's (PROTOCOL §6)."}
    )
    template_variant: str | None = field(
        default=None,
        metadata={"help": "A method's per-dataset template table: kgcoop, tcp, prograd or vpt (PROTOCOL §6.2)."},
    )
    dg_targets: list[str] = field(
        default_factory=lambda: ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"],
        metadata={"help": "Domain-generalisation targets in the CoOp layout under --data_root."},
    )
    augment: bool = field(
        default=True, metadata={"help": "Training augmentation: random resized crop (bicubic) and flip."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Test on at most this many images (debug)."})


@dataclass
class DORArguments:
    dor: bool = field(default=True, metadata={"help": "Train with Dynamic Outlier Regularization (--no_dor: off)."})
    dor_weight: float | None = field(default=None, metadata={"help": "λ; default: the method's (8 CoOp, 2 others)."})
    dor_pool_size: int = field(default=5000, metadata={"help": "Outlier pool size K (near-OOD top-K)."})
    dor_num_outliers: int | None = field(
        default=None, metadata={"help": "Outliers per step; default: the number of training classes."}
    )
    dor_selection: str = field(default="near", metadata={"help": "Pool selection: near, far or random."})
    dor_resample: str = field(default="step", metadata={"help": "New outliers every 'step' or every 'epoch'."})
    dor_sampling: str = field(default="uniform", metadata={"help": "uniform, similarity or cycle."})
    dor_template: str = field(default="a photo of a {}.", metadata={"help": "Template of the zero-shot targets."})
    dor_vocabulary: str = field(
        default="wordnet",
        metadata={"help": "'wordnet', a text file with one term per line, or comma-separated terms."},
    )
    dor_side: str | None = field(
        default=None,
        metadata={"help": "text (outlier words) or image (outlier images); default: the method's (image for VPT)."},
    )
    dor_outlier_images: str | None = field(
        default=None, metadata={"help": "dor_side=image: an image folder or Hub dataset id with outlier images."}
    )


@dataclass
class RunArguments:
    method: str = field(
        default="coop",
        metadata={"help": f"Prompt method: one of {', '.join(k.lower() for k in METHODS)}."},
    )
    config: str | None = field(
        default=None, metadata={"help": "YAML file of flags (default: examples/configs/<method>.yaml if present)."}
    )
    method_config: str | None = field(
        default=None, metadata={"help": "JSON object of method-config fields not exposed as flags."}
    )
    demo: bool = field(
        default=False, metadata={"help": "Offline demo: tiny CLIP, generated images, CoOp + DOR, < 2 minutes on CPU."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output directory that already holds results."}
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Protocol batch size over all processes; sets per_device_train_batch_size accordingly."},
    )
    optimizer: str = field(
        default="sgd", metadata={"help": "Protocol optimiser: sgd or adam; 'hf' uses --optim instead."}
    )
    scheduler: str = field(
        default="protocol", metadata={"help": "'protocol' (warm-up + per-epoch cosine) or 'hf' (--lr_scheduler_type)."}
    )
    ece_bins: int = field(default=10, metadata={"help": "Bins of ECE/MCE/ACE (10 as in the DOR lab's code)."})
    ece_edge_rule: str = field(default="standard", metadata={"help": "standard, or 'lab' to match the DOR lab."})
    mce_variant: str = field(default="standard", metadata={"help": "standard, or 'weighted' (the DOR lab's MCE)."})
    gpa_mean: float = field(default=15.0, metadata={"help": "PromptSRC only: mean epoch of prompt aggregation."})
    gpa_std: float = field(default=1.0, metadata={"help": "PromptSRC only: std of prompt aggregation."})


# Fields every PEFT config has, and fields train.py fills itself: not exposed as method flags.
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

_DEMO = {
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
    "save_strategy": "no",
    "dataloader_num_workers": 0,
}


def _has_accelerator() -> bool:
    # Without a GPU, Trainer only runs DDP (gloo) under `accelerate launch` / torchrun when use_cpu=True.
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _resolve_method(name: str) -> str:
    key = str(name).upper().removeprefix("DOR_")
    if key not in METHODS:
        raise SystemExit(f"Unknown --method {name!r}; choose one of: {', '.join(k.lower() for k in METHODS)}.")
    return key


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
    return dataclasses.make_dataclass(f"{config_cls.__name__}Options", specs)


def _load_yaml(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: expected a mapping of flag names to values, got {type(values).__name__}.")
    return values


def parse_args(argv: list[str] | None = None):
    """Parse the command line and the YAML config into the argument dataclasses (and the method options)."""
    from transformers import HfArgumentParser, TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--method")
    pre.add_argument("--demo", nargs="?", const="true", default=None)
    known, _ = pre.parse_known_args(argv)
    demo = known.demo is not None and known.demo.lower() in ("true", "1", "yes")
    method = known.method or ("coop" if demo else None)
    config_path = known.config
    if config_path is None and method is None and not demo:
        method = "coop"
    if config_path is None:
        default = CONFIG_DIR / f"{(method or 'coop').lower().removeprefix('dor_')}.yaml"
        config_path = str(default) if default.exists() else None
    file_values = _load_yaml(config_path) if config_path else {}
    method = method or file_values.get("method", "coop")
    method_key = _resolve_method(method)
    config_cls = method_classes(method_key)[0]

    fixed = (ModelArguments, DataArguments, DORArguments, RunArguments, TrainingArguments)
    taken = {f.name for cls in fixed for f in dataclasses.fields(cls)}
    options_cls = method_options_class(config_cls, taken)
    parser = HfArgumentParser((*fixed, options_cls))
    known_flags = {action.dest for action in parser._actions}
    defaults: dict[str, Any] = {
        "method": method_key.lower(),
        "remove_unused_columns": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10,
        "use_cpu": not _has_accelerator(),
    }
    unknown = sorted(set(file_values) - known_flags)
    if unknown:
        raise SystemExit(
            f"{config_path}: unknown key(s) {unknown}. Keys are the flags of examples/train.py without '--' "
            f"(python examples/train.py --method {method_key.lower()} --help lists them)."
        )
    defaults.update(file_values)
    defaults["method"] = method_key.lower()
    defaults["config"] = config_path
    if demo:
        defaults.update(_DEMO)
    parser.set_defaults(**defaults)
    namespace, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if namespace.output_dir in (None, ""):
        seed = namespace.seed
        namespace.output_dir = os.path.join(
            "outputs", namespace.method, namespace.dataset or "data", f"shots{namespace.shots}_seed{seed}"
        )
    outputs = []
    for dtype in parser.dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in names}))
    model_args, data_args, dor_args, run_args, training_args, options = outputs
    run_args.demo = demo or run_args.demo
    flags = {a.split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    if "__per_device_train_batch_size" in flags and "__global_batch_size" not in flags:
        run_args.global_batch_size = None  # an explicit per-device batch on the command line wins over the config
    return model_args, data_args, dor_args, run_args, training_args, options, config_cls


# ---------------------------------------------------------------------------------------------------- pieces
def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuse to overwrite finished results."""
    results = os.path.join(output_dir, RESULTS_FILE)
    if os.path.exists(results) and not overwrite:
        raise SystemExit(
            f"Output directory {output_dir!r} already holds results ({results}). Pass --overwrite_output_dir to "
            "replace them, or choose another --output_dir."
        )


def demo_assets(training_args) -> tuple[str, str, list[str]]:
    """The demo CLIP, the generated image folder and a small DOR vocabulary (all offline, cached)."""
    from peft_dor.data.synthetic import DEMO_CLASS_NAMES, build_demo_clip, write_image_folder
    from peft_dor.dor import default_cache_dir
    from peft_dor.testing import TINY_WORDS

    cache = default_cache_dir()
    with training_args.main_process_first(desc="demo assets"):
        data_dir = write_image_folder(cache / "demo-images", DEMO_CLASS_NAMES, n_train=16, n_test=8, size=48)
        # peft_dor.testing's tiny CLIP with its projection heads fitted to the images: a stand-in for pre-training
        model_path = build_demo_clip(cache / "demo-clip", data_dir)
    function_words = {"a", "an", "the", "of", "x", "photo", "picture", "type", "doing", "centered"}
    vocabulary = [w for w in TINY_WORDS if w not in function_words and w not in DEMO_CLASS_NAMES]
    return model_path, data_dir, vocabulary


def load_splits(data_args, model_args):
    from peft_dor.data import load_benchmark

    name = data_args.dataset if data_args.dataset not in (None, "demo") else None
    kwargs = {}
    if data_args.dataset_name is not None:
        kwargs.update(cache_dir=model_args.cache_dir)
    return load_benchmark(
        name,
        data_root=data_args.data_root,
        data_dir=data_args.data_dir,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        image_column=data_args.image_column,
        label_column=data_args.label_column,
        test_split=data_args.test_split,
        **kwargs,
    )


def dor_config(dor_args, demo_vocabulary: list[str] | None, processor, data_args):
    """The ``DORConfig`` of the run, or None without DOR."""
    if not dor_args.dor:
        return None
    from peft_dor.dor import DORConfig

    vocabulary: Any = dor_args.dor_vocabulary
    if demo_vocabulary is not None:
        vocabulary = demo_vocabulary
    elif "," in vocabulary and not os.path.exists(vocabulary):
        vocabulary = [t.strip() for t in vocabulary.split(",") if t.strip()]
    outlier_images = None
    if dor_args.dor_side == "image" and not dor_args.dor_outlier_images:
        raise SystemExit("--dor_side image needs --dor_outlier_images (an image folder or Hub dataset id).")
    if dor_args.dor_outlier_images:
        # the method may default to image-side DOR (VPT): its regulariser then says if the images are missing
        outlier_images = outlier_image_dataset(dor_args, processor)
    pool_size = dor_args.dor_pool_size
    if isinstance(vocabulary, list) and pool_size > len(vocabulary):
        # a short custom vocabulary (--dor_vocabulary a,b,c) uses all of it rather than failing on the default 5000
        logger.info("DOR: pool_size %d > %d vocabulary terms; using the whole vocabulary.", pool_size, len(vocabulary))
        pool_size = len(vocabulary)
    return DORConfig(
        weight=dor_args.dor_weight,
        pool_size=pool_size,
        num_outliers=dor_args.dor_num_outliers,
        selection=dor_args.dor_selection,
        resample=dor_args.dor_resample,
        sampling=dor_args.dor_sampling,
        template=dor_args.dor_template,
        vocabulary=vocabulary,
        side=dor_args.dor_side,
        outlier_images=outlier_images,
    )


def outlier_image_dataset(dor_args, processor):
    from peft_dor.data import CLIPImageTransform, load_benchmark, with_clip_transform

    source = dor_args.dor_outlier_images
    local = os.path.isdir(os.path.expanduser(source))
    splits = load_benchmark(data_dir=source) if local else load_benchmark(dataset_name=source)
    images = splits["train"]
    if len(images) > dor_args.dor_pool_size:
        images = images.shuffle(seed=0).select(range(dor_args.dor_pool_size))
    return with_clip_transform(images, CLIPImageTransform(processor, train=False))


def build_model(model_args, config_cls, options, run_args, class_names: list[str], template: str, demo: bool):
    from peft import get_peft_model
    from transformers import CLIPModel

    values = dataclasses.asdict(options)
    if run_args.method_config:
        extra = (
            json.loads(run_args.method_config) if isinstance(run_args.method_config, str) else run_args.method_config
        )
        values.update(extra)
    config = config_cls(class_names=class_names, template=template, **values)
    clip = CLIPModel.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir
    )
    return get_peft_model(clip, config)


def trainer_class_and_callbacks(method_key: str, run_args):
    """Method-specific training pieces: ProGrad's gradient projection, PromptSRC's prompt aggregation."""
    from peft_dor.training import DORTrainer

    trainer_cls, callbacks = DORTrainer, []
    if method_key == "PROGRAD":
        from peft_dor.training import prograd

        ready = getattr(prograd, "ProGradTrainer", None)
        if isinstance(ready, type) and issubclass(ready, DORTrainer):
            trainer_cls = ready
        else:
            trainer_cls = type("ProGradDORTrainer", (prograd.ProGradMixin, DORTrainer), {})
    if method_key == "PROMPTSRC":
        from peft_dor.training.gpa import GPACallback

        callbacks.append(GPACallback(mean=run_args.gpa_mean, std=run_args.gpa_std))
    return trainer_cls, callbacks


def _limit(dataset, n: int | None):
    return dataset if n is None or len(dataset) <= n else dataset.shuffle(seed=0).select(range(n))


def _json_default(value: Any):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, dor_args, run_args, training_args, options, config_cls = parse_args(argv)
    method_key = _resolve_method(run_args.method)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level if log_level >= 0 else logging.INFO)
    if training_args.should_log:
        logger.setLevel(logging.INFO)
    check_output_dir(training_args.output_dir, run_args.overwrite_output_dir)
    if data_args.task not in TASKS:
        raise SystemExit(f"--task must be one of {TASKS}; got {data_args.task!r}.")

    import torch
    from transformers import set_seed

    from peft_dor.data import (
        CLIPImageTransform,
        ImageClassificationCollator,
        TransformEpochCallback,
        base_to_new_benchmarks,
        build_few_shot_benchmark,
        load_coop_benchmark,
        load_image_processor,
        template_for,
        with_clip_transform,
    )
    from peft_dor.evaluation import (
        evaluate_base_to_new,
        evaluate_domain_generalization,
        evaluate_split,
        format_run_summary,
    )
    from peft_dor.hub import DISPLAY_NAMES, push_to_hub, save_with_model_card

    world_size = training_args.world_size
    if run_args.global_batch_size is not None:
        per_step = world_size * training_args.gradient_accumulation_steps
        if run_args.global_batch_size % per_step:
            raise SystemExit(
                f"--global_batch_size {run_args.global_batch_size} is not divisible by processes x accumulation "
                f"steps ({world_size} x {training_args.gradient_accumulation_steps})."
            )
        training_args.per_device_train_batch_size = run_args.global_batch_size // per_step
    global_batch = training_args.per_device_train_batch_size * world_size * training_args.gradient_accumulation_steps
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    if training_args.push_to_hub:
        # Trainer's own push would write a transformers model card over PEFT's; we push once at the end instead.
        push_repo = push_repo or Path(training_args.output_dir).name
        training_args.push_to_hub = False

    demo_vocabulary = None
    if run_args.demo:
        model_args.model_name_or_path, data_args.data_dir, demo_vocabulary = demo_assets(training_args)
        data_args.data_root = data_args.dataset_name = None
    logger.info(
        "method %s | dataset %s | task %s | seed %d | %d process(es), global batch %d",
        method_key.lower(),
        data_args.dataset,
        data_args.task,
        training_args.seed,
        world_size,
        global_batch,
    )
    set_seed(training_args.seed)

    # ------------------------------------------------------------------ data
    with training_args.main_process_first(desc="loading data"):
        splits = load_splits(data_args, model_args)
    name = data_args.dataset if data_args.dataset != "demo" else None
    template = data_args.template or template_for(name, data_args.template_variant)
    build = {"shots": data_args.shots, "seed": training_args.seed, "template": template, "name": data_args.dataset}
    if data_args.task == "base_to_new":
        train_side, new_side = base_to_new_benchmarks(splits, **build)
    else:
        train_side, new_side = build_few_shot_benchmark(splits, subsample="all", **build), None
    logger.info("train: %s", train_side)

    processor = load_image_processor(
        model_args.model_name_or_path, revision=model_args.model_revision, cache_dir=model_args.cache_dir
    )
    train_transform = CLIPImageTransform(processor, train=data_args.augment, seed=training_args.seed)
    eval_transform = CLIPImageTransform(processor, train=False)
    train_dataset = with_clip_transform(train_side.train, train_transform)

    def test_set(dataset):
        return with_clip_transform(_limit(dataset, data_args.max_eval_samples), eval_transform)

    # Dassl drops the last incomplete batch only when the data holds at least one full batch.
    training_args.dataloader_drop_last = len(train_dataset) >= global_batch

    # ------------------------------------------------------------------ model, DOR, trainer
    model = build_model(model_args, config_cls, options, run_args, train_side.class_names, template, run_args.demo)
    if training_args.should_log:
        model.print_trainable_parameters()
    dor = dor_config(dor_args, demo_vocabulary, processor, data_args)
    trainer_cls, callbacks = trainer_class_and_callbacks(method_key, run_args)
    trainer = trainer_cls(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=ImageClassificationCollator(),
        dor=dor,
        compute_metrics=None,
        optimizer_name=None if run_args.optimizer == "hf" else run_args.optimizer,
        scheduler_name=None if run_args.scheduler == "hf" else run_args.scheduler,
        callbacks=[TransformEpochCallback(train_transform), *callbacks],
    )

    # ------------------------------------------------------------------ train
    start = time.time()
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_metrics = dict(train_output.metrics)

    # ------------------------------------------------------------------ evaluate
    report = {"edge_rule": run_args.ece_edge_rule, "mce_variant": run_args.mce_variant}
    eval_kwargs = {"n_bins": run_args.ece_bins, "trainer": trainer, "report_kwargs": report}
    results: dict[str, Any] = {
        "method": method_key.lower(),
        "dataset": data_args.dataset or "data",
        "task": data_args.task,
        "seed": training_args.seed,
        "shots": data_args.shots,
        "template": template,
        "model_name_or_path": model_args.model_name_or_path,
        "dor": None if dor is None else dor.to_dict(),
        "world_size": world_size,
        "global_batch_size": global_batch,
        "n_bins": run_args.ece_bins,
        "peft_dor_version": peft_dor.__version__,
    }
    plots: dict[str, Any] = {}
    if data_args.task == "base_to_new":
        evaluation = evaluate_base_to_new(
            model,
            test_set(train_side.test),
            test_set(new_side.test),
            train_side.class_names,
            new_side.class_names,
            **eval_kwargs,
        )
        results.update(evaluation.to_dict())
        results["class_names"] = {"base": train_side.class_names, "new": new_side.class_names}
        plots = {"base": evaluation.base, "new": evaluation.new}
    elif data_args.task == "few_shot":
        evaluation = evaluate_split(model, test_set(train_side.test), train_side.class_names, **eval_kwargs)
        results["test"] = evaluation.metrics
        results["class_names"] = train_side.class_names
        plots = {"test": evaluation}
    else:
        if not data_args.data_root:
            raise SystemExit("--task domain_generalization reads its targets from the CoOp layout: give --data_root.")
        targets = {}
        for target in data_args.dg_targets:
            test = load_coop_benchmark(target, data_args.data_root)["test"]
            targets[target] = (test_set(test), list(test.features["label"].names))
        evaluation = evaluate_domain_generalization(
            model, (test_set(train_side.test), train_side.class_names), targets, **eval_kwargs
        )
        results.update(evaluation.to_dict())
        plots = {"source": evaluation.source, **evaluation.targets}
    results["train"] = {k: v for k, v in train_metrics.items() if isinstance(v, (int, float))}
    results["wall_time_s"] = round(time.time() - start, 2)

    # ------------------------------------------------------------------ outputs (main process only)
    if trainer.is_world_process_zero():
        output_dir = training_args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        card = {
            "results": results if data_args.task == "base_to_new" else None,
            "dor": results["dor"],
            "dataset_name": data_args.dataset,
        }
        save_with_model_card(unwrapped, output_dir, **card)
        figures = []
        for side, split_eval in plots.items():
            path = os.path.join(output_dir, f"reliability_{side}.png")
            title = f"{DISPLAY_NAMES.get(method_key.lower(), method_key)}{' + DOR' if dor else ''}: {side}"
            split_eval.plot(path, title=title, n_bins=run_args.ece_bins)
            figures.append(path)
        # write then rename: a crash never leaves a half-written results.json that a resumable grid would trust
        partial = os.path.join(output_dir, RESULTS_FILE + ".partial")
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=_json_default)
        os.replace(partial, os.path.join(output_dir, RESULTS_FILE))
        if data_args.task == "base_to_new":
            print(f"\n{method_key.lower()} on {data_args.dataset} (seed {training_args.seed}), values in %:")
            print(format_run_summary(results))
        logger.info(
            "wrote %s, %s and the adapter to %s", RESULTS_FILE, ", ".join(map(os.path.basename, figures)), output_dir
        )
        if push_repo:
            extra = {RESULTS_FILE: os.path.join(output_dir, RESULTS_FILE)}
            extra.update({os.path.basename(p): p for p in figures})
            commit = push_to_hub(
                unwrapped,
                push_repo,
                token=training_args.hub_token,
                private=training_args.hub_private_repo,
                extra_files=extra,
                **card,
            )
            logger.info("pushed to %s", getattr(commit, "commit_url", push_repo))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return results


if __name__ == "__main__":
    main()
