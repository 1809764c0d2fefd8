"""The README's Python quickstart runs as written, with the tiny CLIP for the Hub model and a generated image folder
for ``my_images/`` (and a short DOR vocabulary and one epoch, so it stays fast)."""

from __future__ import annotations

import re

from .conftest import ROOT


def _quickstart() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quickstart (Python)") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quickstart_runs(tiny_clip_path, tmp_path, monkeypatch, capsys):
    from peft_dor.data.synthetic import write_image_folder

    folder = write_image_folder(tmp_path / "my_images", ["cat", "dog", "bird"], n_train=4, n_test=2, size=32)
    code = _quickstart()
    for old, new in (
        ('"openai/clip-vit-base-patch16"', repr(tiny_clip_path)),
        ('"my_images/"', repr(str(folder))),
        ("DORConfig(weight=8.0)", "DORConfig(weight=8.0, vocabulary=['river', 'chair', 'cup', 'book'], pool_size=4)"),
        ("num_train_epochs=5", "num_train_epochs=1"),
    ):
        assert old in code, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["out"].logits.shape == (2, 3)
    assert "eval_accuracy" in capsys.readouterr().out
    assert (tmp_path / "coop-mine" / "adapter_model.safetensors").exists()
