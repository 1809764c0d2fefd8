"""Image-feature cache: encode the training images once, then train prompts from the stored features.

For methods whose vision tower is the frozen base model (text prompts only, and DOR on any of them), an image's
features do not depend on the prompts, so the vision tower, usually most of a training step, can
run once per image instead of once per image per epoch. Augmentation is kept by storing ``num_views`` (K) augmented
views per image: view ``v`` is the training transform's draw for epoch ``v``, and each epoch the collator picks one
view per example, seeded by ``(seed, epoch, row)``, so every process of a distributed run and a resumed run pick the
same views. K=1 without augmentation is the fast recipe; K equal to the number of epochs with the training
transform reproduces the augmentation distribution exactly (with other draws than a pixel run, as its views are
chosen at random per epoch).

The features live in an Arrow file on disk (memory-mapped by ``datasets``), written by a batched no-grad
``Dataset.map`` and keyed by everything that changes them: the input dataset's fingerprint, the vision tower's
weights and compute dtype, the transform (with its seed) and K. A second call with the same inputs loads the file.
Under several processes, build it inside ``training_args.main_process_first()`` so one process writes and the others
read.

Methods that prompt the vision tower are refused: their image features change as they
train. A method says which it is with ``PromptTuner.image_features_cacheable``.

Example:
    ```python
    from peft_dor.data import CLIPImageTransform, load_image_processor
    from peft_dor.data.feature_cache import FeatureViewCollator, build_feature_cache

    transform = CLIPImageTransform(load_image_processor(path), train=True, seed=1)
    features = build_feature_cache(model, splits["train"], transform=transform, num_views=8)
    collator = FeatureViewCollator(seed=1)          # also a TrainerCallback: it follows the epoch
    trainer = DORTrainer(model=model, args=TrainingArguments(..., remove_unused_columns=False),
                         train_dataset=features, data_collator=collator, callbacks=[collator], dor=DORConfig())
    ```
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import TrainerCallback

from ..cache import cache_root

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

#: bump when the stored layout or the encoding changes, so old cache files are not reused
CACHE_FORMAT_VERSION = 1
FEATURE_COLUMN = "image_embeds"
INDEX_COLUMN = "index"


# ---------------------------------------------------------------------------------------------------- the model side
def _unwrap(model: torch.nn.Module) -> tuple[Any, torch.nn.Module, Any]:
    """(tuner or None, CLIPModel, PromptCLIP or None) behind a PeftModel, PromptTuner, PromptCLIP or CLIPModel.

    Recognised by what they have rather than by class: ``data/`` sits below ``prompting/`` and imports none of it. A
    tuner's class declares ``image_features_cacheable``; a ``PromptCLIP`` holds ``clip`` and ``prompts_suspended``.
    """
    tuner = None
    base = getattr(model, "base_model", None) if hasattr(model, "get_base_model") else None
    if hasattr(type(base), "image_features_cacheable"):
        tuner = base
    elif hasattr(type(model), "image_features_cacheable"):
        tuner = model
    wrapper = tuner.model if tuner is not None else model
    if hasattr(wrapper, "prompts_suspended") and hasattr(wrapper, "clip"):
        return tuner, wrapper.clip, wrapper
    if hasattr(wrapper, "get_image_features") and hasattr(wrapper, "vision_model"):
        return tuner, wrapper, None
    raise TypeError(
        f"Expected a peft-dor model (get_peft_model(clip, config)) or a transformers CLIPModel; got "
        f"{type(model).__name__}."
    )


def check_image_features_cacheable(model: torch.nn.Module) -> None:
    """Raise ``ValueError`` if ``model``'s method changes the vision tower, so cached image features would be stale.

    Example:
        ```python
        check_image_features_cacheable(get_peft_model(clip, VPTConfig(class_names=names)))  # ValueError
        ```
    """
    tuner, _, _ = _unwrap(model)
    if tuner is not None and not type(tuner).image_features_cacheable:
        method = type(tuner).__name__.removesuffix("Model")
        raise ValueError(
            f"{method} cannot train from cached image features: its prompts enter the vision tower "
            f"({type(tuner).__name__}.image_features_cacheable is False), so its image features change at every "
            "step. Train it from pixel_values (CLIPImageTransform + ImageClassificationCollator). The feature cache "
            "serves methods whose vision tower stays the frozen base model."
        )


def vision_fingerprint(clip: torch.nn.Module) -> str:
    """A hash of the vision tower's weights (and their dtypes): equal for the same base model, wherever it was loaded."""
    hasher = hashlib.blake2b(digest_size=16)
    for prefix in ("vision_model", "visual_projection"):  # SigLIP has no visual_projection (its head is in the tower)
        if not hasattr(clip, prefix):
            continue
        state = getattr(clip, prefix).state_dict()
        for name in sorted(state):
            tensor = state[name].detach().cpu().contiguous()
            hasher.update(f"{prefix}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            if tensor.numel():
                hasher.update(tensor.view(torch.uint8).numpy())  # the raw bytes, without a copy
    return hasher.hexdigest()


def _transform_fingerprint(transform: Any) -> str:
    from datasets.fingerprint import Hasher

    return Hasher.hash(transform)


def feature_cache_key(
    model: torch.nn.Module,
    dataset: Dataset,
    transform: Any = None,
    num_views: int = 1,
    image_column: str = "image",
    transform_key: str | None = None,
) -> str:
    """The cache key of :func:`build_feature_cache`: a hash of dataset, vision weights, dtype, transform and K."""
    _, clip, _ = _unwrap(model)
    dataset = _undecoded(dataset, transform, image_column)
    if transform is not None and transform_key is None:
        transform = copy.deepcopy(transform)
        if hasattr(transform, "set_epoch"):
            transform.set_epoch(0)  # the views are epochs 0..K-1 whatever epoch the caller's copy is at
        transform_key = _transform_fingerprint(transform)
    parts = {
        "version": CACHE_FORMAT_VERSION,
        "dataset": dataset._fingerprint,
        "vision": vision_fingerprint(clip),
        "dtype": str(next(clip.vision_model.parameters()).dtype),
        "transform": transform_key,
        "transform_seed": getattr(transform, "seed", None),
        "num_views": int(num_views),
        "image_column": image_column,
    }
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()


def _undecoded(dataset: Dataset, transform: Any, image_column: str) -> Dataset:
    """``dataset`` with its image column left encoded when a transform decodes it (as ``with_clip_transform`` does:
    the transform then keys augmentation by path, so the views are the draws a pixel run with it makes)."""
    from datasets import Image

    feature = dataset.features.get(image_column)
    if transform is not None and isinstance(feature, Image) and feature.decode:
        return dataset.cast_column(image_column, Image(decode=False))
    return dataset


def default_cache_dir() -> Path:
    """``image_features`` under the cache root (``$PEFT_DOR_CACHE``, default ``~/.cache/peft_dor``)."""
    return cache_root() / "image_features"


# ---------------------------------------------------------------------------------------------------- building
def _pixel_views(transform: Any, batch: dict[str, list], image_column: str, num_views: int) -> torch.Tensor:
    """``(K, B, 3, H, W)``: view ``v`` of each image is the transform's draw for epoch ``v``."""
    if transform is None:
        pixels = torch.stack([torch.as_tensor(np.asarray(p)) for p in batch[image_column]])
        return pixels.unsqueeze(0)
    views = []
    for view in range(num_views):
        if hasattr(transform, "set_epoch"):
            transform.set_epoch(view)
        out = transform(dict(batch))
        pixels = out["pixel_values"] if isinstance(out, dict) else out
        views.append(torch.stack([torch.as_tensor(p) for p in pixels]) if isinstance(pixels, list) else pixels)
    return torch.stack(views)


def build_feature_cache(
    model: torch.nn.Module,
    dataset: Dataset,
    transform: Callable | None = None,
    num_views: int = 1,
    *,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    transform_key: str | None = None,
    load_from_cache: bool = True,
) -> Dataset:
    """Encode ``num_views`` views of every image of ``dataset`` with the frozen vision tower, stored on disk.

    Args:
        model: the model to train (a peft-dor ``PeftModel``) or the base ``CLIPModel``; only its frozen vision tower
            runs. Methods that prompt the vision tower raise ``ValueError``.
        dataset: rows with an image column and a label column.
        transform: a batch transform in the ``Dataset.with_transform`` protocol returning ``pixel_values``, such as
            ``peft_dor.data.CLIPImageTransform``; views ``0..K-1`` are its draws for epochs ``0..K-1`` (it needs
            ``set_epoch`` when ``num_views > 1``). ``None``: the image column already holds preprocessed pixels.
        num_views: K, the number of augmented views stored per image.
        image_column / label_column: input columns; the label column is kept.
        batch_size: images per map batch (each batch runs ``batch_size * K`` images through the vision tower).
        cache_dir: folder of the Arrow files; default :func:`default_cache_dir`.
        transform_key: a string to identify a transform that ``datasets`` cannot hash (e.g. one holding a lambda).
        load_from_cache: reuse an existing file with the same key (set False to rebuild).

    Returns:
        A memory-mapped ``datasets.Dataset`` with ``label_column``, ``image_embeds`` (``(K, D)`` float32 projected,
        un-normalised features, as ``CLIPModel.get_image_features`` returns) and ``index`` (the row), to train with
        :class:`FeatureViewCollator` and ``model(image_embeds=..., labels=...)``.

    Example:
        ```python
        features = build_feature_cache(model, train_ds, CLIPImageTransform(processor, train=True), num_views=4)
        features[0]["image_embeds"]  # K lists of D floats
        ```
    """
    from datasets import Array2D, Dataset, Features, Value

    if not isinstance(num_views, int) or num_views < 1:
        raise ValueError(f"`num_views` must be a positive integer (K views per image); got {num_views!r}.")
    if num_views > 1 and not hasattr(transform, "set_epoch"):
        raise ValueError(
            f"num_views={num_views} needs a random training transform with `set_epoch` (views are its draws for "
            "epochs 0..K-1), e.g. CLIPImageTransform(processor, train=True); without augmentation use num_views=1."
        )
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset has no column {column!r}; its columns are {dataset.column_names}.")
    check_image_features_cacheable(model)
    _, clip, wrapper = _unwrap(model)

    if dataset.format.get("type") == "custom":
        raise ValueError(
            "The dataset already has a transform (with_transform / with_clip_transform); pass the untransformed "
            "dataset and give the transform as `transform=`."
        )
    key = feature_cache_key(model, dataset, transform, num_views, image_column, transform_key)
    dataset = _undecoded(dataset, transform, image_column)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"features-{key}.arrow"
    if load_from_cache and path.exists():
        return Dataset.from_file(str(path))

    transform = copy.deepcopy(transform)  # set_epoch on a copy: the caller's transform keeps its epoch
    device = next(clip.vision_model.parameters()).device
    dtype = next(clip.vision_model.parameters()).dtype
    # the image feature's width: CLIP projects to projection_dim; SigLIP's vision head keeps the tower's width
    width = getattr(clip.config, "projection_dim", None) or clip.config.vision_config.hidden_size

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, Any]:
        pixels = _pixel_views(transform, batch, image_column, num_views)  # (K, B, 3, H, W)
        n_views, n_images = pixels.shape[:2]
        with torch.no_grad():
            flat = pixels.reshape(n_views * n_images, *pixels.shape[2:]).to(device=device, dtype=dtype)
            embeds = clip.get_image_features(pixel_values=flat).pooler_output.float().cpu()
        embeds = embeds.reshape(n_views, n_images, -1).transpose(0, 1).numpy()
        return {FEATURE_COLUMN: embeds, INDEX_COLUMN: list(indices)}

    features = Features(
        {
            label_column: dataset.features[label_column],
            FEATURE_COLUMN: Array2D((num_views, width), "float32"),
            INDEX_COLUMN: Value("int64"),
        }
    )
    was_training = clip.training
    clip.eval()
    suspended = wrapper.prompts_suspended() if wrapper is not None else nullcontext()
    try:
        with suspended:
            return dataset.map(
                encode,
                batched=True,
                batch_size=batch_size,
                with_indices=True,
                remove_columns=[c for c in dataset.column_names if c != label_column],
                features=features,
                cache_file_name=str(path),
                load_from_cache_file=False,
                new_fingerprint=key,
                desc=f"Encoding {num_views} view(s) per image",
            )
    finally:
        clip.train(was_training)


# ---------------------------------------------------------------------------------------------------- training
def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread 64-bit hash, vectorised (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def choose_views(indices: Sequence[int], num_views: int, seed: int, epoch: int) -> np.ndarray:
    """The view each row uses in ``epoch``: a pure function of ``(seed, epoch, row)``, uniform over ``num_views``.

    Example:
        ```python
        choose_views([0, 1, 2], num_views=4, seed=1, epoch=0)  # e.g. array([3, 0, 2])
        ```
    """
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + np.uint64(0x9E3779B97F4A7C15))
        key = _mix64(key ^ np.uint64(epoch & 0xFFFFFFFFFFFFFFFF))
        rows = _mix64(key ^ np.asarray(indices, dtype=np.uint64))
    return (rows % np.uint64(num_views)).astype(np.int64)


class FeatureViewCollator(TrainerCallback):
    """Collate rows of a feature cache into ``{"image_embeds": (B, D), "labels": (B,)}``, one view per row.

    Each epoch every row uses one of its K stored views, drawn by :func:`choose_views` from ``(seed, epoch, row)``.
    It is also a ``TrainerCallback``: pass it as ``callbacks=[collator]`` and Trainer sets the epoch before it builds
    each epoch's data iterator (data-loader workers are created per epoch unless
    ``dataloader_persistent_workers=True``, which would keep the first epoch's views). Run Trainer with
    ``remove_unused_columns=False`` so that the ``index`` column reaches the collator.

    Args:
        seed: seed of the view draws.
        label_column: the cache's label column (``labels`` is also accepted).

    Example:
        ```python
        collator = FeatureViewCollator(seed=1)
        batch = collator([features[0], features[1]])
        model(**batch).loss
        ```
    """

    def __init__(self, seed: int = 0, label_column: str = "label") -> None:
        self.seed = int(seed)
        self.label_column = label_column
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the views of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def on_epoch_begin(self, args, state, control, **kwargs):
        # floor, so that a run resumed mid-epoch picks the views of the epoch it resumes in
        self.set_epoch(int(state.epoch or 0))
        return control

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot collate an empty batch.")
        if INDEX_COLUMN not in examples[0]:
            raise ValueError(
                f"Feature-cache rows need their {INDEX_COLUMN!r} column to draw views; Trainer removed it. Set "
                "`remove_unused_columns=False` in TrainingArguments."
            )
        embeds = np.stack([np.asarray(e[FEATURE_COLUMN], dtype=np.float32) for e in examples])  # (B, K, D)
        indices = [int(e[INDEX_COLUMN]) for e in examples]
        views = choose_views(indices, embeds.shape[1], self.seed, self.epoch)
        batch = {"image_embeds": torch.from_numpy(embeds[np.arange(len(examples)), views])}
        key = self.label_column if self.label_column in examples[0] else "labels"
        if key in examples[0]:
            batch["labels"] = torch.tensor([int(e[key]) for e in examples], dtype=torch.long)
        return batch
