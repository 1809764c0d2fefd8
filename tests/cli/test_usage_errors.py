"""Every user mistake ends in one line naming the flag (or folder, or class) and the fix: exit code 2, no traceback,
and nothing loaded or trained first."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import CLASSES, command_env, python, train_args


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("peft-dor"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--shots", "-1"], ["--shots -1", "0 for all"]),
        (["--learning_rate", "0"], ["--learning_rate", "> 0", "the shipped --config coop uses 0.002"]),
        (["--dor_pool_size", "0"], ["--dor_pool_size"]),
        (["--dor_pool_size", "7"], ["--dor_pool_size 7", "only 6 terms", "unset"]),  # VOCABULARY has 6
        (["--ece_bins", "0"], ["--ece_bins"]),
        (["--shots", "many"], ["--shots", "invalid int value"]),
        (["--task", "zero_shot"], ["--task", "invalid choice", "base_to_new"]),
        (["--dor_selection", "closest"], ["--dor_selection", "near"]),
        (["--n_ctxx", "4"], ["unrecognized arguments: --n_ctxx"]),
        (["--method_config", "{prec: fp32}"], ["--method_config", "not valid JSON"]),
        (["--method_config", "[1, 2]"], ["--method_config", "JSON object"]),
        (["--template", "a photo"], ["--template", "'{}'"]),
        (["--methods", "coop", "vpt"], ["--methods", "--demo"]),
        (["--n_ctx", "-3"], ["n_ctx"]),  # the method config's own check, before the model loads
    ],
    ids=lambda v: v[0] if isinstance(v, list) and v and v[0].startswith("--") else None,
)
def test_bad_flag_values(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path, extra, needles):
    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, tmp_path / "out", *extra))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    ("method", "extra", "needles"),
    [
        ("promptsrc", ["--gpa_std", "0"], ["gpa_std=0", "> 0"]),  # the method's own options check themselves
        ("coop", ["--gpa_mean", "3"], ["unrecognized arguments: --gpa_mean"]),  # only the method declaring them
    ],
)
def test_method_training_options(
    run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path, method, extra, needles
):
    args = train_args(image_folder, tiny_clip_path, tmp_path / "out", "--method", method, *extra)
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, *needles)


def test_missing_config_file(run_cli, tmp_path):
    code, _, err = run_cli("train", "--config", tmp_path / "nope.yaml")
    assert_one_line_error(code, err, "--config", "no such file", "coop")


def test_malformed_yaml(run_cli, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("method: coop\nn_ctx: [4\n")
    code, _, err = run_cli("train", "--config", config)
    assert_one_line_error(code, err, str(config), "not valid YAML", "line")


def test_yaml_that_is_not_a_mapping(run_cli, tmp_path):
    config = tmp_path / "list.yaml"
    config.write_text("- coop\n- 4\n")
    code, _, err = run_cli("train", "--config", config)
    assert_one_line_error(code, err, "expected a mapping")


def test_unknown_yaml_key(run_cli, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("method: coop\nn_ctxx: 8\n")
    code, _, err = run_cli("train", "--config", config)
    assert_one_line_error(code, err, "n_ctxx", "--help_all")


def test_unknown_method(run_cli):
    code, _, err = run_cli("train", "--method", "lora")
    assert_one_line_error(code, err, "--method lora", "coop")


def test_shipped_configs_are_named_by_method(run_cli, monkeypatch):
    from peft_dor.cli.arguments import parse_train_args

    command = parse_train_args(["--config", "kgcoop", "--output_dir", "x"])
    assert command.run.method == "kgcoop" and command.run.config.endswith("kgcoop.yaml")


@pytest.mark.parametrize("model", ["./no/such/folder", "not a hub id!", "someone/not-cached-clip"])
def test_model_neither_folder_nor_offline_hub_id(run_cli, no_model_load, image_folder, tmp_path, monkeypatch, model):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, _, err = run_cli(*train_args(image_folder, model, tmp_path / "out"))
    assert_one_line_error(code, err, f"--model_name_or_path {model}")


def test_model_folder_without_config(run_cli, no_model_load, image_folder, tmp_path):
    (tmp_path / "empty-model").mkdir()
    code, _, err = run_cli(*train_args(image_folder, tmp_path / "empty-model", tmp_path / "out"))
    assert_one_line_error(code, err, "config.json")


def test_missing_wordnet_is_found_first(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path, monkeypatch):
    import peft_dor.dor.vocabulary as vocabulary

    monkeypatch.setattr(vocabulary, "_nltk_wordnet_path", lambda: None)
    monkeypatch.setattr(vocabulary, "find_wordnet_dir", lambda *a, **k: None)
    args = train_args(image_folder, tiny_clip_path, tmp_path / "out", "--dor_vocabulary", "wordnet")
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, "WordNet", "apt-get install wordnet-base", "nltk")


def test_missing_vocabulary_file(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    args = train_args(image_folder, tiny_clip_path, tmp_path / "out", "--dor_vocabulary", tmp_path / "terms.txt")
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, "--dor_vocabulary", "no such file")


# ---------------------------------------------------------------------------------------------------- data
def _copy(image_folder, tmp_path):
    return shutil.copytree(image_folder, tmp_path / "data")


def test_empty_class_folder(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    data = _copy(image_folder, tmp_path)
    for f in (data / "train" / "dog").iterdir():
        f.unlink()
    code, _, err = run_cli(*train_args(data, tiny_clip_path, tmp_path / "out"))
    assert_one_line_error(code, err, "empty class folder", "dog")


def test_test_folder_with_other_classes(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    data = _copy(image_folder, tmp_path)
    (data / "test" / "lamp").rename(data / "test" / "lantern")
    code, _, err = run_cli(*train_args(data, tiny_clip_path, tmp_path / "out"))
    assert_one_line_error(code, err, "lamp", "lantern", "same class folders")


def test_too_few_classes(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    data = _copy(image_folder, tmp_path)
    for name in CLASSES[3:]:
        shutil.rmtree(data / "train" / name)
        shutil.rmtree(data / "test" / name)
    code, _, err = run_cli(*train_args(data, tiny_clip_path, tmp_path / "out"))
    assert_one_line_error(code, err, "3 class(es)", "at least 4")


def test_fewer_images_than_shots(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    code, _, err = run_cli(*train_args(image_folder, tiny_clip_path, tmp_path / "out", "--shots", "16"))
    assert_one_line_error(code, err, "fewer than --shots 16", "cat (4)")


def test_duplicate_class_names_after_normalisation(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    data = _copy(image_folder, tmp_path)
    for split in ("train", "test"):
        (data / split / "ship").rename(data / split / "Sea_Lion")
        (data / split / "tree").rename(data / split / "sea lion")
    code, _, err = run_cli(*train_args(data, tiny_clip_path, tmp_path / "out"))
    assert_one_line_error(code, err, "sea lion", "same")


def test_unreadable_image(run_cli, no_model_load, image_folder, tiny_clip_path, tmp_path):
    data = _copy(image_folder, tmp_path)
    broken = sorted((data / "test" / "bird").iterdir())[0]
    broken.write_bytes(b"not a png")
    code, _, err = run_cli(*train_args(data, tiny_clip_path, tmp_path / "out"))
    assert_one_line_error(code, err, "cannot be decoded", broken.name, "--verify_images false")


def test_no_data_source(run_cli, no_model_load, tiny_clip_path, tmp_path):
    code, _, err = run_cli("train", "--model_name_or_path", tiny_clip_path, "--output_dir", tmp_path / "o", "--no_dor")
    assert_one_line_error(code, err, "--data_dir")


def test_a_fresh_process_exits_2_without_traceback(image_folder, tmp_path):
    proc = subprocess.run(
        [python(), "-m", "peft_dor", "train", "--data_dir", image_folder, "--shots", "-2"],
        env=command_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "peft-dor train: error: --shots -2: must be >= 0; use 0 for all training images."


def test_unknown_command(run_cli):
    code, _, err = run_cli("fit")
    assert_one_line_error(code, err, "unknown command 'fit'", "train")
