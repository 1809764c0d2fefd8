"""The command's TrainingArguments defaults follow the official prompt-tuning trainers, not transformers'."""

from __future__ import annotations

from peft_dor.cli.arguments import parse_train_args


def test_no_gradient_clipping_unless_asked():
    assert parse_train_args(["--method", "coop", "--data_dir", "x"]).training.max_grad_norm == 0.0
    command = parse_train_args(["--method", "coop", "--data_dir", "x", "--max_grad_norm", "1.0"])
    assert command.training.max_grad_norm == 1.0


def test_checkpoints_each_epoch_two_kept_seed_one():
    training = parse_train_args(["--method", "coop", "--data_dir", "x"]).training
    assert (training.save_strategy, training.save_total_limit, training.seed) == ("epoch", 2, 1)
