"""Fixtures for the ``peft-dor`` command: a small image folder, a tiny CLIP, and a runner that captures exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["cat", "dog", "bird", "ship", "tree", "lamp"]
#: a short custom vocabulary: no WordNet needed, a pool of 4
VOCABULARY = "river,chair,cup,book,stone,cloud"


def command_env(cache_dir: Path) -> dict[str, str]:
    """The environment of a command run in a fresh process: offline, private caches, this checkout first."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PEFT_DOR_CACHE=str(cache_dir),
        HF_DATASETS_CACHE=str(cache_dir / "datasets"),
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


@pytest.fixture(autouse=True)
def restore_library_output():
    """The command configures logging and progress bars process-wide; give the next test the defaults back."""
    import logging

    import datasets
    import transformers

    package = logging.getLogger("peft_dor")
    handlers, level = list(package.handlers), package.level
    verbosity = transformers.utils.logging.get_verbosity()
    yield
    package.handlers[:] = handlers
    package.setLevel(level)
    datasets.enable_progress_bars()
    datasets.logging.set_verbosity_warning()
    transformers.utils.logging.enable_progress_bar()
    transformers.utils.logging.set_verbosity(verbosity)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """``train/`` (4 per class) and ``test/`` (2 per class), six classes, 32 px PNGs."""
    from peft_dor.data.synthetic import write_image_folder

    return Path(write_image_folder(tmp_path_factory.mktemp("images"), CLASSES, n_train=4, n_test=2, size=32))


@pytest.fixture
def run_cli(capsys):
    """``peft-dor <args>`` in this process: ``(exit code, stdout, stderr)``."""
    from peft_dor.cli import main

    def run(*args: str):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the command gets as far as loading the model."""
    import peft_dor.cli.train as train

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the mistake was found")

    monkeypatch.setattr(train, "build_model", refuse)


def train_args(image_folder, model_path, output_dir, *extra):
    return [
        "train",
        "--method",
        "coop",
        "--n_ctx",
        "2",
        "--model_name_or_path",
        model_path,
        "--data_dir",
        image_folder,
        "--shots",
        "2",
        "--num_train_epochs",
        "1",
        "--global_batch_size",
        "4",
        "--dor_vocabulary",
        VOCABULARY,
        "--output_dir",
        output_dir,
        "--disable_tqdm",
        "true",
        *extra,
    ]


def python() -> str:
    return sys.executable
