"""Safe loading: adapters are safetensors only, nothing is unpickled, and an adapter that does not fit the model
(edited file, another CLIP size) fails with a clear message instead of leaving random prompts.

Tampered files are written with safetensors itself; the other-size CLIPs are real tiny CLIPs built offline.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

import peft_dor
from peft_dor.testing import build_tiny_clip

from ._cases import METHOD_CASES, build_model, trainable_state

PACKAGE = Path(peft_dor.__file__).parent
WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def other_clips(tmp_path_factory) -> dict[str, str]:
    """Tiny CLIPs that differ from the test CLIP only in width or in depth."""
    root = tmp_path_factory.mktemp("other-clips")
    return {
        "wider": build_tiny_clip(
            root / "wider", seed=0, text_config={"hidden_size": 48}, vision_config={"hidden_size": 48}
        ),
        "deeper": build_tiny_clip(
            root / "deeper", seed=0, text_config={"num_hidden_layers": 3}, vision_config={"num_hidden_layers": 3}
        ),
    }


def _saved(make_model, tmp_path, key="coop", name="adapter") -> tuple[Path, dict[str, torch.Tensor]]:
    model = make_model(key)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(1.0)  # trained-looking values, far from any random init
    folder = tmp_path / name
    model.save_pretrained(folder)
    return folder, trainable_state(model)


def _tamper(folder: Path, tmp_path: Path, change) -> Path:
    """A copy of the adapter folder whose weights file is ``change(tensors)``, written with safetensors."""
    copy = tmp_path / f"tampered-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(folder, copy)
    tensors = load_file(str(copy / WEIGHTS))
    save_file({k: v.contiguous() for k, v in change(tensors).items()}, str(copy / WEIGHTS))
    return copy


def test_every_method_saves_safetensors_only_records_the_base_size_and_round_trips(tiny_clip_path, tmp_path):
    for key in METHOD_CASES:
        model = build_model(key, tiny_clip_path, seed=3)
        folder = tmp_path / key
        model.save_pretrained(folder)
        assert sorted(os.listdir(folder)) == ["README.md", "adapter_config.json", WEIGHTS], key
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_dims"] == {
            "text_hidden_size": 32,
            "text_num_hidden_layers": 2,
            "vision_hidden_size": 32,
            "vision_num_hidden_layers": 2,
            "projection_dim": 24,
        }, key
        loaded = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder, is_trainable=True)
        expected = trainable_state(model)
        assert all(torch.equal(value, expected[name]) for name, value in trainable_state(loaded).items()), key
        assert loaded.peft_config["default"].base_model_dims == config["base_model_dims"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: dict(list(t.items())[1:]), r"tensors missing from the file: .*maple_ctx"),
        (lambda t: {}, r"tensors missing from the file"),
        (lambda t: {**t, "base_model.model.clip.text_model.embeddings.maple_extra": torch.zeros(2)}, "no place for"),
        (
            lambda t: {**t, "base_model.model.clip.text_model.embeddings.maple_ctx": torch.zeros(5, 32)},
            r"another shape: .*maple_ctx.default: file \(5, 32\) vs model \(2, 32\)",
        ),
    ],
    ids=["missing-key", "empty-file", "extra-key", "wrong-shape"],
)
def test_tampered_adapter_fails_with_a_clear_message(make_model, tiny_clip_path, tmp_path, change, message):
    folder, _ = _saved(make_model, tmp_path, key="maple")
    tampered = _tamper(folder, tmp_path, change)
    with pytest.raises(ValueError, match=message):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), tampered)


def test_tampered_second_adapter_leaves_the_loaded_one_untouched(make_model, tiny_clip_path, tmp_path):
    folder, trained = _saved(make_model, tmp_path)
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder, is_trainable=True)
    tampered = _tamper(folder, tmp_path, lambda t: {k: v[:2] for k, v in t.items()})
    with pytest.raises(ValueError, match="another shape"):
        model.load_adapter(tampered, adapter_name="other")
    assert all(torch.equal(value, trained[name]) for name, value in trainable_state(model).items())


@pytest.mark.parametrize("other", ["wider", "deeper"])
@pytest.mark.parametrize("key", ["coop", "vpt", "maple"])
def test_adapter_on_a_clip_of_another_size_is_refused(make_model, tmp_path, other_clips, other, key):
    folder, _ = _saved(make_model, tmp_path, key=key)
    field = "text_hidden_size 32 vs 48" if other == "wider" else "text_num_hidden_layers 2 vs 3"
    with pytest.raises(ValueError, match=f"another size.*{field}.*base model it was trained with"):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(other_clips[other]), folder)


def test_adapter_saved_without_the_base_size_still_meets_the_shape_check(make_model, tmp_path, other_clips):
    folder, _ = _saved(make_model, tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    del config["base_model_dims"]  # as written before the field existed
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"another shape: .*coop_ctx.default: file \(4, 32\) vs model \(4, 48\)"):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(other_clips["wider"]), folder)


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a malicious pickle would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_adapter_weights_are_never_executed(make_model, tiny_clip_path, tmp_path):
    folder, trained = _saved(make_model, tmp_path)
    marker = tmp_path / "code-ran"
    with open(folder / "adapter_model.bin", "wb") as handle:
        pickle.dump({"base_model.model.clip.text_model.embeddings.coop_ctx": _Payload(str(marker))}, handle)
    # next to a safetensors file the pickle is never opened
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder, is_trainable=True)
    assert all(torch.equal(value, trained[name]) for name, value in trainable_state(model).items())
    assert not marker.exists()
    # alone, it goes through torch.load(weights_only=True), which refuses it without running it
    (folder / WEIGHTS).unlink()
    with pytest.raises(pickle.UnpicklingError):
        PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), folder)
    assert not marker.exists()


def test_the_package_never_unpickles_or_runs_remote_code():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offences.append(f"{path.relative_to(PACKAGE)}: {match.group(0)}")
        for pattern in (r"\bpickle\.loads?\(", r"trust_remote_code\s*=\s*True", r"\bdill\.", r"\bjoblib\.load\("):
            offences += [f"{path.relative_to(PACKAGE)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert offences == []
