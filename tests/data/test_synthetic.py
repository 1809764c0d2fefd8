"""Synthetic demo data: deterministic image folders and the demo CLIP's fitted projection heads."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from peft_dor.data import load_image_folder
from peft_dor.data.synthetic import synthetic_dataset, write_image_folder
from peft_dor.testing import build_demo_clip


def test_image_folder_is_deterministic_and_reused(tmp_path):
    a = write_image_folder(tmp_path / "a", ["cat", "dog"], n_train=2, n_test=1, size=16, seed=4)
    b = write_image_folder(tmp_path / "b", ["cat", "dog"], n_train=2, n_test=1, size=16, seed=4)
    files = sorted(p.relative_to(a) for p in (tmp_path / "a").rglob("*.png"))
    assert [str(f) for f in files] == [
        "test/cat/0000.png",
        "test/dog/0000.png",
        "train/cat/0000.png",
        "train/cat/0001.png",
        "train/dog/0000.png",
        "train/dog/0001.png",
    ]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    stamp = (tmp_path / "a" / files[0]).stat().st_mtime_ns
    write_image_folder(a, ["cat", "dog"], n_train=2, n_test=1, size=16, seed=4)
    assert (tmp_path / "a" / files[0]).stat().st_mtime_ns == stamp  # reused, not rewritten
    assert b != a


def test_in_memory_dataset_classes_differ():
    ds = synthetic_dataset(3, ["cat", "dog", "bird"], size=16)
    assert ds.features["label"].names == ["cat", "dog", "bird"] and len(ds) == 9
    means = [np.asarray(ds[i]["image"], dtype=float).mean(axis=(0, 1)) for i in (0, 3, 6)]
    assert min(np.abs(means[i] - means[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) > 5


def test_demo_clip_fits_only_the_projection_heads(tmp_path):
    from transformers import CLIPModel

    from peft_dor.data import CLIPImageTransform, load_image_processor, with_clip_transform

    names = ["cat", "dog", "bird", "fish"]
    folder = write_image_folder(tmp_path / "images", names, n_train=6, n_test=0, size=32, seed=1)
    path = build_demo_clip(tmp_path / "clip", folder, steps=20)
    fitted = load_file(f"{path}/model.safetensors")
    base = load_file(f"{path}-base/model.safetensors")
    changed = sorted(k for k in base if not torch.equal(base[k], fitted[k]))
    assert changed == ["text_projection.weight", "visual_projection.weight"]

    # zero-shot with the template now beats chance (1/4) clearly on these images
    from peft import get_peft_model

    import peft_dor

    train = load_image_folder(folder)["train"]
    class_names = train.features["label"].names
    model = get_peft_model(CLIPModel.from_pretrained(path), peft_dor.CoOpConfig(class_names=class_names, n_ctx=2))
    rows = with_clip_transform(train, CLIPImageTransform(load_image_processor(path)))
    pixels = torch.stack([rows[i]["pixel_values"] for i in range(len(rows))])
    with torch.no_grad(), model.disable_adapter():
        logits = model(pixel_values=pixels).logits
    accuracy = (logits.argmax(-1) == torch.tensor(train["label"])).float().mean()
    assert accuracy > 0.6
    assert build_demo_clip(tmp_path / "clip", folder, steps=20) == path  # cached
