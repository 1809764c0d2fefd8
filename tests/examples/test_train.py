"""examples/train.py: argument parsing (YAML + command line, every registered method) and the output-dir guard."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from peft_dor.registry import METHODS

from .conftest import ROOT

CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def test_there_is_one_config_per_registered_method():
    assert {p.stem for p in CONFIGS} == {key.lower() for key in METHODS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_each_config_parses_and_builds_its_method_config(train_script, config, tmp_path):
    parsed = train_script.parse_args(["--config", str(config), "--output_dir", str(tmp_path)])
    model_args, data_args, dor_args, run_args, training_args, options, config_cls = parsed
    assert run_args.method == config.stem and config_cls.__name__.lower().startswith(config.stem)
    assert training_args.output_dir == str(tmp_path) and not training_args.remove_unused_columns
    assert run_args.optimizer in ("sgd", "adam") and run_args.scheduler == "protocol"
    assert data_args.shots == 16 and run_args.ece_bins == 10
    config_cls(class_names=["cat", "dog"], template="a photo of a {}.", **dataclasses.asdict(options))


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_registered_method_has_its_options(train_script, key, tmp_path):
    *_, options, config_cls = train_script.parse_args(["--method", key.lower(), "--output_dir", str(tmp_path)])
    fields = {f.name for f in dataclasses.fields(options)}
    assert "class_names" not in fields and "peft_type" not in fields
    assert fields <= {f.name for f in dataclasses.fields(config_cls)}


def test_command_line_wins_over_yaml(train_script, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("method: coop\nn_ctx: 8\nlearning_rate: 2e-3\nnum_train_epochs: 3\ndor_weight: 4.0\n")
    parsed = train_script.parse_args(["--config", str(config), "--n_ctx", "2", "--output_dir", str(tmp_path)])
    _, _, dor_args, _, training_args, options, _ = parsed
    assert options.n_ctx == 2 and training_args.learning_rate == 0.002 and training_args.num_train_epochs == 3
    assert dor_args.dor_weight == 4.0


def test_unknown_yaml_keys_are_named(train_script, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("method: coop\nn_ctxx: 8\n")
    with pytest.raises(SystemExit, match="n_ctxx"):
        train_script.parse_args(["--config", str(config)])


def test_default_output_dir_and_demo_defaults(train_script):
    parsed = train_script.parse_args(["--method", "kgcoop", "--dataset", "dtd", "--seed", "2"])
    assert parsed[4].output_dir == str(Path("outputs", "kgcoop", "dtd", "shots16_seed2"))
    _, data_args, _, run_args, training_args, options, _ = train_script.parse_args(["--demo"])
    assert run_args.demo and run_args.method == "coop" and data_args.task == "base_to_new"
    assert training_args.output_dir == "demo_output" and options.n_ctx == 4


def test_existing_results_are_never_overwritten(train_script, tmp_path):
    train_script.check_output_dir(str(tmp_path), overwrite=False)  # empty: fine
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(SystemExit, match="--overwrite_output_dir"):
        train_script.check_output_dir(str(tmp_path), overwrite=False)
    train_script.check_output_dir(str(tmp_path), overwrite=True)


def _fake_imagenet(root, wnids, names, n_train=3, n_val=2):
    from peft_dor.data.synthetic import synthetic_images

    (root / "imagenet").mkdir(parents=True)
    (root / "imagenet" / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in zip(wnids, names, strict=True)))
    for split, n in (("train", n_train), ("val", n_val)):
        for i, (label, image) in enumerate(synthetic_images(n, names, seed=len(split), size=32)):
            folder = root / "imagenet" / "images" / split / wnids[label]
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i}.png")
    # ImageNet-R: a subset of the classes, scored over its own class list
    for i, (label, image) in enumerate(synthetic_images(2, names[1:3], seed=9, size=32)):
        folder = root / "imagenet-rendition" / "imagenet-r" / wnids[1 + label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i}.png")


@pytest.mark.parametrize("task", ["domain_generalization", "few_shot"])
def test_other_tasks_run_in_process(train_script, tiny_clip_path, tmp_path, task):
    import json

    _fake_imagenet(tmp_path / "data", ["n01", "n02", "n03", "n04"], ["cat", "dog", "bird", "ship"])
    out = tmp_path / "out"
    results = train_script.main(
        [
            "--method",
            "coop",
            "--n_ctx",
            "2",
            "--model_name_or_path",
            tiny_clip_path,
            "--task",
            task,
            "--dataset",
            "imagenet",
            "--data_root",
            str(tmp_path / "data"),
            "--dg_targets",
            "imagenet_r",
            "--shots",
            "2",
            "--num_train_epochs",
            "1",
            "--global_batch_size",
            "4",
            "--learning_rate",
            "0.01",
            "--dor_vocabulary",
            "tree,river,chair,lamp,cup,book",
            "--dor_pool_size",
            "4",
            "--output_dir",
            str(out),
            "--disable_tqdm",
            "true",
        ]
    )
    assert json.loads((out / "results.json").read_text())["task"] == task
    if task == "domain_generalization":
        assert results["targets"]["imagenet_r"]["n_samples"] == 4 and results["source"]["n_samples"] == 8
        assert results["target_mean"]["accuracy"] == results["targets"]["imagenet_r"]["accuracy"]
        assert sorted(p.name for p in out.glob("*.png")) == ["reliability_imagenet_r.png", "reliability_source.png"]
    else:
        assert results["test"]["n_samples"] == 8 and len(results["class_names"]) == 4
        assert [p.name for p in out.glob("*.png")] == ["reliability_test.png"]


def test_explicit_per_device_batch_wins_over_the_configs_global_batch(train_script, tmp_path):
    run_args = train_script.parse_args(["--method", "coop", "--output_dir", str(tmp_path)])[3]
    assert run_args.global_batch_size == 32
    parsed = train_script.parse_args(["--method", "coop", "--per-device-train-batch-size", "8", "--output_dir", "x"])
    assert parsed[3].global_batch_size is None and parsed[4].per_device_train_batch_size == 8
