"""CLIP preprocessing and the protocol's training augmentation, applied lazily to ``datasets`` rows.

* Test: the base model's image processor (resize the shorter side, bicubic; centre crop; normalise), i.e. exactly
  ``CLIPImageProcessor``'s defaults (docs/data.md).
* Train: random resized crop (scale (0.08, 1), ratio (3/4, 4/3), bicubic) to the crop size, random horizontal flip,
  then normalisation, implemented with PIL so that torchvision is not needed.

The augmentation of a row is drawn from a random generator seeded by ``(seed, epoch, image key)`` (the image's file
name and folder, not where the data lives): every process of a distributed run, any number of data-loader workers, a
resumed run and a copy of the data elsewhere all see the same crops. Trainer sets the epoch
through :class:`TransformEpochCallback`.

Images are decoded here, not by ``datasets``: grayscale, CMYK, palette and RGBA images are converted to RGB, and a
file that cannot be read raises :class:`UnreadableImageError` naming its path.

Example:
    ```python
    from peft_dor.data import CLIPImageTransform, ImageClassificationCollator, load_image_processor

    processor = load_image_processor("openai/clip-vit-base-patch16")
    train_ds = with_clip_transform(splits["train"], CLIPImageTransform(processor, train=True, seed=1))
    batch = ImageClassificationCollator()([train_ds[0], train_ds[1]])  # pixel_values (2, 3, 224, 224), labels (2,)
    ```
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset
    from PIL import Image as PILImage


class UnreadableImageError(OSError):
    """An image file that PIL cannot decode (the message names the file)."""


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, F ...) to RGB, as CLIP expects."""
    import numpy as np
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float grayscale: scale to 8 bits instead of letting PIL clip everything above 255 to white
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = np.zeros_like(array) if high <= low else (array - low) / (high - low) * 255.0
        return Image.fromarray(array.round().astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids PIL's warning about palette transparency
    return image.convert("RGB")


def load_image(value: Any) -> PILImage.Image:
    """A PIL RGB image from a PIL image, a path, or a ``datasets`` ``{"bytes", "path"}`` dict.

    Raises:
        UnreadableImageError: the file or bytes are not a readable image; the message gives the path.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, Image.Image):
        return to_rgb(value)
    path, data = (value.get("path"), value.get("bytes")) if isinstance(value, dict) else (os.fspath(value), None)
    where = repr(path) if path else "<in-memory bytes>"
    try:
        image = Image.open(io.BytesIO(data)) if data is not None else Image.open(path)
        image.load()
    except FileNotFoundError as err:
        raise UnreadableImageError(f"Image file not found: {where}.") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UnreadableImageError(
            f"Cannot read image {where}: {err}. Remove or replace the file (it may be truncated or not an image)."
        ) from err
    return to_rgb(image)


def _location_free(path: str) -> str:
    # "<class folder>/<file>": the same wherever the data set is stored, so moving it does not change the crops
    return "/".join(Path(path).parts[-2:])


def image_key(value: Any) -> str:
    """A stable identifier of an image: its file name with its folder, else a SHA-1 of its bytes."""
    if isinstance(value, dict):
        if value.get("path"):
            return _location_free(str(value["path"]))
        return "sha1:" + hashlib.sha1(value.get("bytes") or b"").hexdigest()
    if isinstance(value, (str, os.PathLike)):
        return _location_free(os.fspath(value))
    return "sha1:" + hashlib.sha1(value.tobytes()).hexdigest()


def random_resized_crop_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(left, top, crop_width, crop_height)`` drawn as torchvision's ``RandomResizedCrop.get_params`` does."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    # fallback: the largest centred crop with an aspect ratio inside `ratio`
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def load_image_processor(name_or_path: str, **kwargs):
    """The base model's image processor (CLIP's, SigLIP's: the class its saved config names); the PIL implementation
    when torchvision is not installed.

    transformers 5 would fall back to the PIL backend by itself, with a warning; choosing it here keeps logs clean.
    """
    import importlib.util

    from transformers import AutoImageProcessor

    if importlib.util.find_spec("torchvision") is None:
        try:
            return AutoImageProcessor.from_pretrained(name_or_path, backend="pil", **kwargs)
        except (ImportError, OSError, ValueError, TypeError):
            pass
    return AutoImageProcessor.from_pretrained(name_or_path, **kwargs)


def _crop_size(processor) -> tuple[int, int]:
    crop = getattr(processor, "crop_size", None) or getattr(processor, "size", None)

    def get(key):
        value = getattr(crop, key, None)
        if value is None and isinstance(crop, dict):
            value = crop.get(key)
        return value

    height, width = get("height"), get("width")
    if height is None or width is None:
        edge = get("shortest_edge")
        if edge is None:
            raise ValueError(f"Cannot read a crop size from the image processor {type(processor).__name__}.")
        height = width = edge
    return int(height), int(width)


@dataclass
class CLIPImageTransform:
    """Turn a batch of ``datasets`` rows into ``pixel_values`` and ``labels`` (use with ``Dataset.with_transform``).

    Args:
        processor: the base model's image processor (see :func:`load_image_processor`).
        train: apply the protocol's augmentation (random resized crop + flip) before normalisation.
        seed: seed of the augmentation; with ``epoch`` and the image key it seeds each row's draw.
        scale / ratio / flip_prob: random-resized-crop scale and aspect ranges; horizontal-flip probability.
        image_column / label_column: input columns.
    """

    processor: Any = field(repr=False)
    train: bool = False
    seed: int = 0
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    image_column: str = "image"
    label_column: str = "label"
    epoch: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ValueError(f"`scale` must satisfy 0 < low <= high <= 1; got {self.scale}.")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"`ratio` must satisfy 0 < low <= high; got {self.ratio}.")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"`flip_prob` must lie in [0, 1]; got {self.flip_prob}.")
        self.crop_size = _crop_size(self.processor)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def augment(self, image: PILImage.Image, key: str) -> PILImage.Image:
        """Random resized crop to the crop size (bicubic) and random flip, seeded by ``(seed, epoch, key)``."""
        from PIL import Image

        rng = random.Random(f"{self.seed}|{self.epoch}|{key}")
        left, top, w, h = random_resized_crop_box(image.width, image.height, rng, self.scale, self.ratio)
        height, width = self.crop_size
        image = image.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
        if rng.random() < self.flip_prob:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def pixel_values(self, values: Sequence[Any]) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised pixels of the images in ``values`` (PIL images, paths or datasets dicts)."""
        images = [load_image(v) for v in values]
        if self.train:
            images = [self.augment(image, image_key(v)) for image, v in zip(images, values, strict=True)]
            out = self.processor(images=images, do_resize=False, do_center_crop=False, return_tensors="pt")
        else:
            out = self.processor(images=images, return_tensors="pt")
        return out["pixel_values"]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        pixels = self.pixel_values(batch[self.image_column])
        out: dict[str, list] = {"pixel_values": list(pixels)}
        if self.label_column in batch:
            out["labels"] = [int(y) for y in batch[self.label_column]]
        return out


def with_clip_transform(dataset: Dataset, transform: CLIPImageTransform) -> Dataset:
    """A lazily transformed view of ``dataset`` (rows come out as ``pixel_values`` + ``labels``).

    The image column is switched to undecoded ``{"bytes", "path"}`` dicts so that the transform decodes each image
    itself (RGB conversion, the path in read errors, path-keyed augmentation). Uses ``with_transform``, which
    returns a new view and leaves ``dataset`` untouched.
    """
    from datasets import Image

    column = transform.image_column
    feature = dataset.features.get(column)
    if isinstance(feature, Image) and feature.decode:
        dataset = dataset.cast_column(column, Image(decode=False))
    return dataset.with_transform(transform)


@dataclass
class ImageClassificationCollator:
    """Stack transformed rows into ``{"pixel_values": (B, 3, H, W), "labels": (B,)}`` for the model.

    Rows may be transformed (``pixel_values`` + ``labels``) or already hold tensors; extra keys are dropped, so
    Trainer can run with ``remove_unused_columns=False`` (needed for lazy transforms).
    """

    label_key: str = "labels"

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot collate an empty batch.")
        pixel_values = torch.stack([torch.as_tensor(e["pixel_values"]) for e in examples])
        batch = {"pixel_values": pixel_values}
        key = self.label_key if self.label_key in examples[0] else ("label" if "label" in examples[0] else None)
        if key is not None:
            batch["labels"] = torch.tensor([int(e[key]) for e in examples], dtype=torch.long)
        return batch


def _trainer_callback_base():
    try:
        from transformers import TrainerCallback
    except ImportError:  # pragma: no cover
        return object
    return TrainerCallback


class TransformEpochCallback(_trainer_callback_base()):
    """Trainer callback that tells training transforms which epoch starts (keyed augmentation).

    Trainer calls ``on_epoch_begin`` before it creates the epoch's data iterator, so data-loader workers (created per
    epoch unless ``dataloader_persistent_workers=True``) see the new epoch too.
    """

    def __init__(self, *transforms: CLIPImageTransform) -> None:
        self.transforms = transforms

    def on_epoch_begin(self, args, state, control, **kwargs):
        for transform in self.transforms:
            transform.set_epoch(int(state.epoch or 0))
        return control
