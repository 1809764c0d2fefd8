"""``peft-dor train`` arguments: YAML + command line, every registered method, brief --help, and the other tasks."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from peft_dor.cli.arguments import CONFIG_DIR, parse_train_args
from peft_dor.cli.errors import UsageError
from peft_dor.registry import METHODS

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_is_one_shipped_config_per_registered_method():
    assert {p.stem for p in CONFIGS} == {key.lower() for key in METHODS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_each_config_parses_and_builds_its_method_config(config, tmp_path):
    command = parse_train_args(["--config", str(config), "--output_dir", str(tmp_path)])
    assert command.run.method == config.stem and command.config_cls.__name__.lower().startswith(config.stem)
    training = command.training
    assert training.output_dir == str(tmp_path) and not training.remove_unused_columns
    assert training.save_strategy == "epoch" and training.save_total_limit == 2 and training.seed == 1
    assert command.run.optimizer in ("sgd", "adam") and command.run.scheduler == "protocol"
    assert command.data.shots == 16 and command.run.ece_bins == 10
    options = dataclasses.asdict(command.method_options)
    command.config_cls(class_names=["cat", "dog"], template="a photo of a {}.", **options)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_registered_method_has_its_options(key, tmp_path):
    command = parse_train_args(["--method", key.lower(), "--output_dir", str(tmp_path)])
    fields = {f.name for f in dataclasses.fields(command.method_options)}
    assert "class_names" not in fields and "peft_type" not in fields
    assert fields <= {f.name for f in dataclasses.fields(command.config_cls)}


def test_command_line_wins_over_yaml(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("method: coop\nn_ctx: 8\nlearning_rate: 2e-3\nnum_train_epochs: 3\ndor_weight: 4.0\n")
    command = parse_train_args(["--config", str(config), "--n_ctx", "2", "--output_dir", str(tmp_path)])
    assert command.method_options.n_ctx == 2 and command.training.learning_rate == 0.002
    assert command.training.num_train_epochs == 3 and command.dor.dor_weight == 4.0


def test_default_output_dir_and_demo_defaults():
    command = parse_train_args(["--method", "kgcoop", "--dataset", "dtd", "--seed", "2"])
    assert command.training.output_dir == str(Path("outputs", "kgcoop", "dtd", "shots16_seed2"))
    demo = parse_train_args(["--demo"])
    assert demo.run.demo and demo.run.method == "coop" and demo.training.output_dir == "demo_output"
    generated = parse_train_args(["--dataset", "demo"])  # the generated-data check takes the same quick defaults
    assert not generated.run.demo and generated.data.task == "base_to_new" and generated.method_options.n_ctx == 4
    assert generated.training.output_dir == "demo_output" and generated.training.num_train_epochs == 6


def test_help_shows_the_librarys_options_first_and_hides_rare_training_flags(run_cli):
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    assert out.index("--model_name_or_path") < out.index("--dor_weight") < out.index("--num_train_epochs")
    assert "--n_ctx" in out and "--learning_rate" in out and "--help_all" in out
    assert "--adafactor" not in out and "--torch_compile_mode" not in out
    code, out_all, _ = run_cli("train", "--help_all")
    assert code == 0 and "--torch_compile_mode" in out_all and len(out_all) > 2 * len(out)


def test_options_with_few_values_declare_choices(run_cli):
    code, out, _ = run_cli("train", "--help")
    for flag, values in (("--task", "base_to_new,few_shot"), ("--dor_resample", "step,epoch"), ("--method", "coop")):
        assert f"{flag} {{{values}" in out, flag


def test_explicit_per_device_batch_wins_over_the_configs_global_batch(tmp_path):
    command = parse_train_args(["--method", "coop", "--output_dir", str(tmp_path)])
    assert command.run.global_batch_size == 32
    command = parse_train_args(["--method", "coop", "--per-device-train-batch-size", "8", "--output_dir", "x"])
    assert command.run.global_batch_size is None and command.training.per_device_train_batch_size == 8


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
def test_other_tasks_run_in_process(tiny_clip_path, tmp_path, task):
    import json

    from peft_dor.cli.train import main

    _fake_imagenet(tmp_path / "data", ["n01", "n02", "n03", "n04"], ["cat", "dog", "bird", "ship"])
    out = tmp_path / "out"
    results = main(
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


UNSHIPPED = re.compile(r"\b(PROTOCOL|METHODS|DOR|CALIBRATION|INTEGRATION)\.md\b|shared/spec|\bspec/")


@pytest.mark.parametrize("key", sorted(METHODS))
def test_help_cites_no_file_that_does_not_ship(run_cli, key):
    code, out, _ = run_cli("train", "--method", key.lower(), "--help_all")
    assert code == 0 and not UNSHIPPED.search(" ".join(out.split()))


def test_docs_readme_and_configs_cite_no_file_that_does_not_ship():
    root = CONFIG_DIR.parents[2]
    files = [root / "README.md", *(root / "docs").glob("*.md"), *CONFIG_DIR.glob("*.yaml")]
    cited = {str(p.relative_to(root)) for p in files if UNSHIPPED.search(p.read_text())}
    assert not cited


def test_demo_takes_its_method_from_methods(run_cli):
    command = parse_train_args(["--demo", "--methods", "kgcoop"])
    assert command.run.method == "kgcoop" and command.config_cls.__name__ == "KgCoOpConfig"
    code, _, err = run_cli("train", "--demo", "--methods", "vpt")
    assert code == 2 and "methods" in err and "vpt" in err and "kgcoop" in err


@pytest.mark.parametrize("flag", [["--seed", "3"], ["--learning_rate", "0.1"], ["--dataset", "dtd"]])
def test_demo_refuses_flags_of_a_training_run(run_cli, tmp_path, flag):
    code, _, err = run_cli("train", "--demo", "--output_dir", tmp_path / "out", *flag)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and flag[0] in lines[0] and "docs/world.md" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_demo_refuses_an_output_dir_with_results(run_cli, tmp_path):
    (tmp_path / "results.json").write_text("{}")
    code, _, err = run_cli("train", "--demo", "--output_dir", tmp_path)
    assert code == 2 and "--overwrite_output_dir" in err and (tmp_path / "results.json").read_text() == "{}"


def test_template_variant_choices_are_the_methods_that_declare_templates():
    from peft_dor import method_spec
    from peft_dor.cli.options import TEMPLATE_METHODS

    assert set(TEMPLATE_METHODS) == {"kgcoop", "tcp", "prograd", "vpt"}
    command = parse_train_args(["--method", "coop", "--template_variant", "prograd", "--data_dir", "x"])
    assert method_spec(command.data.template_variant).template_for("dtd") == "a texture of {}."
    with pytest.raises(UsageError, match="--template_variant"):
        parse_train_args(["--template_variant", "coop", "--data_dir", "x"])


def test_help_lines_of_per_method_defaults_come_from_the_registry():
    from peft_dor.cli.options import DORArguments

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(DORArguments)}
    for spec in METHODS.values():
        assert f"{spec.default_dor_weight:g}" in helps["dor_weight"]
        assert spec.dor_side in helps["dor_side"]
    odd_sides = [spec.display_name for spec in METHODS.values() if spec.dor_side != "text"]
    assert all(f"image for {name}" in helps["dor_side"] for name in odd_sides)
