"""CLIP preprocessing, the protocol's augmentation, image decoding and the collator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from peft_dor.data import (
    CLIPImageTransform,
    ImageClassificationCollator,
    TransformEpochCallback,
    UnreadableImageError,
    load_image,
    load_image_processor,
    random_resized_crop_box,
    to_rgb,
    with_clip_transform,
)

from .conftest import tiny_images_dataset


@pytest.fixture(scope="module")
def processor(tiny_clip_path):
    return load_image_processor(tiny_clip_path)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode not in ("I;16", "I", "F") else None
    if image is None:
        array = np.linspace(0, 60000, 35).reshape(5, 7)
        image = Image.fromarray(array.astype(np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.float32))
        assert image.mode == mode
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (7, 5)
    if mode in ("I;16", "I", "F"):  # 16-bit / float grey is rescaled, not clipped to white
        values = np.asarray(out)[..., 0]
        assert values.min() == 0 and values.max() == 255


def test_images_from_paths_bytes_and_dicts(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 3), (0, 255, 0, 0)).save(path)
    assert load_image(path).mode == "RGB"
    assert load_image({"path": str(path), "bytes": None}).size == (4, 3)
    assert load_image({"path": None, "bytes": path.read_bytes()}).mode == "RGB"


def test_unreadable_image_is_reported_with_its_path(tmp_path, processor):
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UnreadableImageError, match="broken.png"):
        load_image(str(bad))
    with pytest.raises(UnreadableImageError, match="not found.*missing.png"):
        load_image(str(tmp_path / "missing.png"))
    # through a real dataset: the lazy transform decodes, so the error names the file
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["cat"])})
    ds = Dataset.from_dict({"image": [str(bad)], "label": [0]}, features=features)
    view = with_clip_transform(ds, CLIPImageTransform(processor))
    with pytest.raises(UnreadableImageError, match=str(bad)):
        view[0]


def test_random_resized_crop_box_follows_torchvision_rules():
    rng = random.Random(0)
    for _ in range(200):
        left, top, w, h = random_resized_crop_box(64, 48, rng)
        assert left >= 0 and left + w <= 64 and top >= 0 and top + h <= 48
        assert 0.08 * 64 * 48 * 0.8 <= w * h <= 64 * 48
    # an impossible request falls back to the largest centred crop within the ratio range
    assert random_resized_crop_box(100, 10, random.Random(0), scale=(1.0, 1.0)) == (43, 0, 13, 10)
    assert random_resized_crop_box(20, 20, random.Random(0), scale=(1.0, 1.0)) == (0, 0, 20, 20)


def test_eval_transform_is_the_image_processor(processor):
    ds = tiny_images_dataset([2, 1], size=40)
    view = with_clip_transform(ds, CLIPImageTransform(processor))
    row = view[1]
    reference = processor(images=[ds[1]["image"].convert("RGB")], return_tensors="pt")["pixel_values"][0]
    assert row["labels"] == 0 and torch.equal(row["pixel_values"], reference)
    assert ds.features["image"].decode  # the original dataset is untouched (with_transform returns a view)


def test_train_augmentation_is_keyed_by_seed_epoch_and_image(processor):
    ds = tiny_images_dataset([3, 3], size=48)
    transform = CLIPImageTransform(processor, train=True, seed=5)
    view = with_clip_transform(ds, transform)
    first = torch.stack([view[i]["pixel_values"] for i in range(6)])
    assert first.shape == (6, 3, 32, 32)
    # the same rows in another order (another process, another worker) get the same crops
    reordered = with_clip_transform(ds.select([5, 4, 3, 2, 1, 0]), CLIPImageTransform(processor, train=True, seed=5))
    assert torch.equal(torch.stack([reordered[5 - i]["pixel_values"] for i in range(6)]), first)
    transform.set_epoch(1)
    assert not torch.equal(torch.stack([view[i]["pixel_values"] for i in range(6)]), first)
    callback = TransformEpochCallback(transform)
    callback.on_epoch_begin(None, type("State", (), {"epoch": 0.0})(), None)
    assert torch.equal(torch.stack([view[i]["pixel_values"] for i in range(6)]), first)


def test_collator_stacks_pixels_and_labels(processor):
    ds = with_clip_transform(tiny_images_dataset([2, 2], size=40), CLIPImageTransform(processor))
    batch = ImageClassificationCollator()([ds[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["labels"].tolist() == [0, 0, 1, 1] and batch["labels"].dtype == torch.long
    with pytest.raises(ValueError, match="empty"):
        ImageClassificationCollator()([])


def test_transform_validates_its_ranges(processor):
    with pytest.raises(ValueError, match="scale"):
        CLIPImageTransform(processor, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="flip_prob"):
        CLIPImageTransform(processor, flip_prob=2.0)


def test_augmentation_does_not_depend_on_where_the_data_lives(tmp_path, processor):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    views = []
    for root in ("here", "elsewhere/deeper"):
        path = tmp_path / root / "cat" / "0001.png"
        path.parent.mkdir(parents=True)
        image.save(path)
        features = Features({"image": ImageFeature(), "label": ClassLabel(names=["cat"])})
        ds = Dataset.from_dict({"image": [str(path)], "label": [0]}, features=features)
        views.append(with_clip_transform(ds, CLIPImageTransform(processor, train=True, seed=3))[0]["pixel_values"])
    assert torch.equal(views[0], views[1])
