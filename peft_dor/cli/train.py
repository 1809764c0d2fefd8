"""``peft-dor train``: train a prompt method (with DOR) on few-shot data, save the adapter, then evaluate it.

The paper's protocol as one command: few-shot sampling with a seed, base-to-new (train on the base classes, test on
base and new), domain generalisation, or few-shot on all classes; the protocol's optimiser and schedule; accuracy and
calibration (ECE, MCE, ACE, NLL, Brier) with reliability diagrams; the adapter saved with a model card.

The run never loses work: a checkpoint is written each epoch (``--save_total_limit`` kept); rerunning the same
command in the same ``--output_dir`` resumes from the last one; Ctrl-C or SIGTERM saves a checkpoint at the next step
and exits with the command that resumes; the adapter is saved before evaluation, and a failed evaluation says how to
evaluate it later (``peft-dor evaluate``).

Writes into ``--output_dir``: ``results.json`` (every effective setting, the metrics, library versions), the adapter
(``adapter_config.json``, ``adapter_model.safetensors``) with a model card (``README.md``), ``reliability_<split>.png``,
Trainer's ``train_results.json`` / ``eval_results.json`` / ``all_results.json`` / ``trainer_state.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .arguments import parse_train_args
from .build import build_model, dor_config, method_config, vocabulary_record
from .errors import UsageError, usage_errors
from .options import TrainCommand
from .output import LabelledProgressCallback, ProgressCallback, logger, setup_output
from .preflight import check_data, check_model_source, check_wordnet, load_splits
from .records import (
    ADAPTER_FILE,
    RESULTS_FILE,
    TRAIN_RESULTS_FILE,
    data_flags,
    hub_id_of,
    library_versions,
    resume_command,
    training_summary,
    write_json_atomically,
)
from .resume import plan_output_dir
from .scoring import evaluate_run, flat_metrics


class TrainingInterrupted(SystemExit):
    """Raised after a graceful SIGINT/SIGTERM stop; its code is 128 + the signal number."""


# ---------------------------------------------------------------------------------------------------- pieces
def demo_assets(training_args) -> tuple[str, str, list[str]]:
    """The demo CLIP, the generated image folder and a small DOR vocabulary (all offline, cached)."""
    from ..cache import cache_root
    from ..data.synthetic import DEMO_CLASS_NAMES, write_image_folder
    from ..testing import TINY_WORDS, build_demo_clip

    cache = cache_root()
    with training_args.main_process_first(desc="demo assets"):
        data_dir = write_image_folder(cache / "demo-images", DEMO_CLASS_NAMES, n_train=16, n_test=8, size=48)
        # peft_dor.testing's tiny CLIP with its projection heads fitted to the images: a stand-in for pre-training
        model_path = build_demo_clip(cache / "demo-clip", data_dir)
    function_words = {"a", "an", "the", "of", "x", "photo", "picture", "type", "doing", "centered"}
    vocabulary = [w for w in TINY_WORDS if w not in function_words and w not in DEMO_CLASS_NAMES]
    return str(model_path), str(data_dir), vocabulary


#: the flags ``--demo`` takes (with the ExperimentConfig field each sets, if any); it runs a fixed experiment
_DEMO_FLAGS = {
    "demo": None,
    "output_dir": None,
    "overwrite_output_dir": None,
    "methods": None,
    "method": None,
    "num_train_epochs": "epochs",
    "shots": "shots",
}


def run_demo(command: TrainCommand) -> dict[str, Any]:
    """``--demo``: the paper in miniature on the shipped world CLIP (zero-shot, a method, the method + DOR; 3 seeds).

    See docs/world.md. ``--methods`` adds methods, ``--num_train_epochs`` and ``--shots`` shorten it.
    """
    from ..world.demo import check_demo_arguments
    from ..world.demo import run_demo as run_world_demo

    other = sorted(command.explicit_flags - set(_DEMO_FLAGS))
    if other:
        raise UsageError(
            f"--{other[0]}: --demo runs the fixed world experiment of docs/world.md and takes only "
            "--output_dir, --overwrite_output_dir, --methods, --num_train_epochs and --shots; drop it, or train "
            "on your data without --demo."
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--demo runs in one process; start it without accelerate launch / torchrun.")
    epochs = command.training.num_train_epochs
    if "num_train_epochs" in command.explicit_flags and epochs != int(epochs):
        raise UsageError(f"--num_train_epochs {epochs:g}: the demo trains whole epochs; give an integer.")
    values = {"num_train_epochs": int(epochs), "shots": command.data.shots}
    options = {
        _DEMO_FLAGS[flag]: values[flag] for flag in ("num_train_epochs", "shots") if flag in command.explicit_flags
    }
    methods = command.run.methods or [command.run.method]
    output_dir, overwrite = command.training.output_dir, command.run.overwrite_output_dir
    try:
        with usage_errors("--demo"):
            check_demo_arguments(output_dir, methods, overwrite_output_dir=overwrite, **options)
    except FileExistsError as error:
        raise UsageError(" ".join(str(error).split())) from None
    try:
        return run_world_demo(output_dir, methods=methods, overwrite_output_dir=overwrite, **options)
    except KeyboardInterrupt:  # a minute-long fixed experiment: nothing to resume, so no traceback either
        print(
            f"peft-dor train: --demo interrupted before it wrote its results to {output_dir}; rerun the command.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def run_generated_data(command: TrainCommand) -> dict[str, Any]:
    """``--dataset demo``: a quick check of the whole training path on generated images and a small fitted CLIP."""
    model_path, data_dir, vocabulary = demo_assets(command.training)
    command.model.model_name_or_path = model_path
    command.data.data_dir = data_dir
    command.data.data_root = command.data.dataset_name = None
    return train(command, demo_vocabulary=vocabulary)


def _limit(dataset, n: int | None):
    return dataset if n is None or len(dataset) <= n else dataset.shuffle(seed=0).select(range(n))


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``peft-dor train``: parse, then train (or run the demo). Returns the results dict."""
    command = parse_train_args(argv)
    setup_output(command.training.should_log)
    if command.run.demo:
        return run_demo(command)
    if command.data.dataset == "demo":
        return run_generated_data(command)
    return train(command)


def train(command: TrainCommand, demo_vocabulary: list[str] | None = None) -> dict[str, Any]:  # noqa: C901
    """Run one training command end to end (see the module doc)."""
    training_args, data_args, run_args = command.training, command.data, command.run
    setup_output(training_args.should_log)
    method_key = command.method_key

    world_size = training_args.world_size
    if run_args.global_batch_size is not None:
        per_step = world_size * training_args.gradient_accumulation_steps
        if run_args.global_batch_size % per_step:
            raise UsageError(
                f"--global_batch_size {run_args.global_batch_size}: not divisible by processes x accumulation steps "
                f"({world_size} x {training_args.gradient_accumulation_steps}); choose a multiple."
            )
        training_args.per_device_train_batch_size = run_args.global_batch_size // per_step
    global_batch = training_args.per_device_train_batch_size * world_size * training_args.gradient_accumulation_steps
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    if training_args.push_to_hub:
        # Trainer's own push would write a transformers model card over PEFT's; we push once at the end instead.
        push_repo = push_repo or Path(training_args.output_dir).name
        training_args.push_to_hub = False

    # ------------------------------------------------------------------ checks before any work
    from ..training.checkpoints import RunRecordCallback, checkpoint_step, training_fingerprint, write_run_record

    settings = command.settings()
    settings["training"]["global_batch_size"] = global_batch
    fingerprint = training_fingerprint(settings)
    with training_args.main_process_first(desc="output folder"):  # only the main process removes old files
        plan = plan_output_dir(command, fingerprint)
    if plan.finished is not None:
        logger.info(
            "%s already holds the finished run (%s); nothing to train. --overwrite_output_dir retrains it.",
            training_args.output_dir,
            RESULTS_FILE,
        )
        return plan.finished
    check_model_source(command.model.model_name_or_path, command.model.model_revision, command.model.cache_dir)
    if demo_vocabulary is None:
        check_wordnet(command.dor)
    if data_args.task == "domain_generalization" and not data_args.data_root:
        raise UsageError("--task domain_generalization reads its targets from the CoOp layout: give --data_root.")

    import torch
    from transformers import set_seed

    from ..data import (
        CLIPImageTransform,
        ImageClassificationCollator,
        TransformEpochCallback,
        base_to_new_benchmarks,
        build_few_shot_benchmark,
        load_image_processor,
        template_for,
        with_clip_transform,
    )
    from ..registry import method_spec
    from ..training import DORTrainer
    from ..training.interrupt import GracefulInterrupt

    source = data_args.data_dir or data_args.data_root or data_args.dataset_name
    logger.info(
        "method %s | data %s | task %s | seed %d | %d process(es), global batch %d",
        method_key.lower(),
        data_args.dataset if data_args.dataset not in (None, "demo") else source,
        data_args.task,
        training_args.seed,
        world_size,
        global_batch,
    )
    set_seed(training_args.seed)

    # ------------------------------------------------------------------ data (checked before the model loads)
    with training_args.main_process_first(desc="loading data"):
        splits = load_splits(data_args, command.model)
    check_data(splits, data_args)
    name = data_args.dataset if data_args.dataset != "demo" else None
    if data_args.template:
        template = data_args.template
    elif data_args.template_variant:
        template = method_spec(data_args.template_variant).template_for(name)
    else:
        template = template_for(name)
    build = {"shots": data_args.shots, "seed": training_args.seed, "template": template, "name": data_args.dataset}
    with usage_errors(f"data {source}"):
        if data_args.task == "base_to_new":
            train_side, new_side = base_to_new_benchmarks(splits, **build)
        else:
            train_side, new_side = build_few_shot_benchmark(splits, subsample="all", **build), None
    logger.info("train: %s", train_side)
    config = method_config(command, train_side.class_names, template)

    processor = load_image_processor(
        command.model.model_name_or_path, revision=command.model.model_revision, cache_dir=command.model.cache_dir
    )
    dor = dor_config(command.dor, demo_vocabulary, processor)
    train_transform = CLIPImageTransform(processor, train=data_args.augment, seed=training_args.seed)
    eval_transform = CLIPImageTransform(processor, train=False)
    train_dataset = with_clip_transform(train_side.train, train_transform)

    def test_set(dataset):
        return with_clip_transform(_limit(dataset, data_args.max_eval_samples), eval_transform)

    # Dassl drops the last incomplete batch only when the data holds at least one full batch.
    training_args.dataloader_drop_last = len(train_dataset) >= global_batch

    # ------------------------------------------------------------------ model, DOR, trainer
    model = build_model(command, config)
    if training_args.should_log:
        model.print_trainable_parameters()
    interrupt = GracefulInterrupt()
    with usage_errors():
        # DORTrainer composes what the method declares (ProGrad's projection, PromptSRC's prompt aggregation)
        trainer = DORTrainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            data_collator=ImageClassificationCollator(),
            dor=dor,
            compute_metrics=None,
            optimizer_name=None if run_args.optimizer == "hf" else run_args.optimizer,
            scheduler_name=None if run_args.scheduler == "hf" else run_args.scheduler,
            callbacks=[TransformEpochCallback(train_transform), interrupt],
            method_options=command.method_training,
        )
    progress = LabelledProgressCallback()
    if trainer.pop_callback(ProgressCallback) is not None:  # present unless --disable_tqdm
        trainer.add_callback(progress)

    def pool_record() -> dict[str, Any]:
        return {"pool": vocabulary_record(dor, trainer.dor)} if dor is not None else {}

    trainer.add_callback(RunRecordCallback(fingerprint, extra=pool_record))
    output_dir = training_args.output_dir
    start = time.time()

    # ------------------------------------------------------------------ train (or reuse the trained adapter)
    if plan.evaluate_only:
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        logger.info("%s holds the trained adapter of this run; evaluating it.", output_dir)
        set_peft_model_state_dict(model, load_file(os.path.join(output_dir, ADAPTER_FILE)))
        with open(os.path.join(output_dir, TRAIN_RESULTS_FILE), encoding="utf-8") as f:
            train_metrics = json.load(f)
        trainer.prepare_dor()
    else:
        if plan.checkpoint is not None:
            logger.info("Resuming from %s (step %d).", plan.checkpoint, checkpoint_step(plan.checkpoint))
        with interrupt.installed():
            train_output = trainer.train(resume_from_checkpoint=plan.checkpoint)
        if interrupt.stopped_at is not None:
            print(
                f"\nInterrupted at step {interrupt.stopped_at} of {trainer.state.max_steps}; checkpoint saved in "
                f"{os.path.join(output_dir, f'checkpoint-{interrupt.stopped_at}')}.\nResume with the same command: "
                f"{resume_command(command)}",
                file=sys.stderr,
                flush=True,
            )
            raise TrainingInterrupted(interrupt.exit_code)
        train_metrics = dict(train_output.metrics)

    # ------------------------------------------------------------------ save the adapter before evaluating
    from ..hub import build_model_card, push_to_hub, save_with_model_card

    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    base_model = hub_id_of(command.model.model_name_or_path)
    hyperparameters = training_summary(command, global_batch)
    if trainer.is_world_process_zero() and not plan.evaluate_only:
        os.makedirs(output_dir, exist_ok=True)
        save_with_model_card(
            unwrapped,
            output_dir,
            dor=None if dor is None else dor.to_dict(),
            dataset_name=data_args.dataset,
            base_model=base_model,
            training=hyperparameters,
        )
        write_run_record(output_dir, {**fingerprint, **pool_record()})
        trainer.save_metrics("train", train_metrics)  # train_results.json: marks the adapter as final
        trainer.save_state()

    # ------------------------------------------------------------------ evaluate
    results: dict[str, Any] = {
        "method": method_key.lower(),
        "dataset": data_args.dataset or os.path.basename(os.path.normpath(source)),
        "task": data_args.task,
        "seed": training_args.seed,
        "shots": data_args.shots,
        "template": template,
        "model_name_or_path": command.model.model_name_or_path,
        "dor": None if dor is None else dor.to_dict(),
        "vocabulary": vocabulary_record(dor, trainer.dor),
        "world_size": world_size,
        "global_batch_size": global_batch,
        "n_bins": run_args.ece_bins,
        "peft_dor_version": library_versions()["peft_dor"],
        "versions": library_versions(),
        "settings": settings,
    }
    try:
        evaluation, plots = evaluate_run(command, trainer, model, train_side, new_side, test_set, progress, results)
    except Exception as error:
        if isinstance(error, UsageError):
            raise
        logger.exception("Evaluation failed: %s", error)
        print(
            f"\nEvaluation failed ({type(error).__name__}: {error}). The trained adapter is saved in {output_dir}. "
            f"Evaluate it later with:\n  peft-dor evaluate --adapter {shlex.quote(output_dir)} "
            f"{data_flags(command)}--output_dir {shlex.quote(os.path.join(output_dir, 'eval'))}\nor rerun the "
            "same command, which evaluates the saved adapter without training again.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    results["train"] = {k: v for k, v in train_metrics.items() if isinstance(v, (int, float))}
    results["wall_time_s"] = round(time.time() - start, 2)

    # ------------------------------------------------------------------ outputs (main process only)
    if trainer.is_world_process_zero():
        figures = []
        for side, split_eval in plots.items():
            path = os.path.join(output_dir, f"reliability_{side}.png")
            title = f"{method_spec(method_key).display_name}{' + DOR' if dor else ''}: {side}"
            split_eval.plot(path, title=title, n_bins=run_args.ece_bins)
            figures.append(path)
        trainer.save_metrics("eval", flat_metrics(evaluation))
        card = {
            "results": results if data_args.task == "base_to_new" else None,
            "dor": results["dor"],
            "dataset_name": data_args.dataset,
            "base_model": base_model,
            "training": hyperparameters,
        }
        readme = os.path.join(output_dir, "README.md")
        build_model_card(unwrapped, existing_card=readme, **card).save(readme)
        write_json_atomically(os.path.join(output_dir, RESULTS_FILE), results)
        if data_args.task == "base_to_new":
            from .tables import format_run_summary

            print(f"\n{method_key.lower()} on {results['dataset']} (seed {training_args.seed}), values in %:")
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
