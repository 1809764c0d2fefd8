"""DOR's configuration and loss: ``L_dor = 1 - mean cos(prompted outlier features, zero-shot outlier features)``.

The prompted features come out of the model's one training forward (``extra_names=`` for text-side DOR,
``extra_pixel_values=`` for image-side DOR); the zero-shot targets are looked up in the pool built once per run, never
re-encoded per step. :class:`DORRegularizer` never reaches into a method's internals, so it works with every method.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..prompting import PromptLayer
from ..registry import DEFAULT_DOR_WEIGHT, MethodSpec, method_spec
from .config import DEFAULT_POOL_SIZE, DORConfig, check_outlier_images
from .outliers import (
    OutlierPool,
    OutlierSampler,
    build_image_pool,
    build_text_pool,
    draw_number,
    unwrap_prompt_model,
)
from .vocabulary import default_cache_dir, load_vocabulary, term_key

#: λ of a method that does not declare its own (each method's folder declares it: ``method_spec(model)``)
DEFAULT_WEIGHT = DEFAULT_DOR_WEIGHT
#: pool positions whose zero-shot image targets are encoded together (see ``DORRegularizer._image_targets_for``)
IMAGE_TARGET_BLOCK = 32


def default_weight(method: str | None) -> float:
    """The paper's λ for a method key such as ``"COOP"`` (8.0) or ``"MAPLE"`` (2.0), as its folder declares it."""
    try:
        return float(method_spec(method).default_dor_weight)
    except (KeyError, TypeError):
        return DEFAULT_WEIGHT


def _spec(model) -> MethodSpec | None:
    try:
        return method_spec(unwrap_prompt_model(model))
    except TypeError:
        return None


def method_key(model) -> str | None:
    """The ``DorPeftType`` name (``"COOP"``, ...) of a prompt model's active adapter, or ``None``."""
    spec = _spec(model)
    return None if spec is None else spec.key


def method_defaults(model) -> tuple[float, str]:
    """``(λ, side)`` for a prompt model's active method, as its folder declares them (``method_spec(model)``), else
    :data:`DEFAULT_WEIGHT` and ``"text"``."""
    spec = _spec(model)
    if spec is None:
        return DEFAULT_WEIGHT, "text"
    return float(spec.default_dor_weight), spec.dor_side


@dataclass
class OutlierDraw:
    """The outliers of one training forward.

    Attributes:
        positions: ``(B,)`` positions in the pool.
        names: the outlier terms (text side).
        pixel_values: ``(B, 3, H, W)`` outlier images (image side).
        targets: ``(B, D)`` zero-shot features the prompted ones are pulled towards.
    """

    positions: torch.LongTensor
    names: list[str] | None
    pixel_values: torch.Tensor | None
    targets: torch.Tensor

    def model_kwargs(self) -> dict[str, Any]:
        """What to add to the model's forward so it returns the prompted outlier features."""
        if self.names is not None:
            return {"extra_names": list(self.names)}
        return {"extra_pixel_values": self.pixel_values}


def outlier_drift(prompted: torch.Tensor, targets: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - mean cos(prompted, targets)``: DOR's loss, computed in float32.

    Args:
        prompted: ``(B, D)`` prompted features, or ``(N, B, D)`` when text prompts are conditioned on each of N images
            (CoCoOp); the mean then runs over images too (not only the last image, as the official code did).
        targets: ``(B, D)`` zero-shot features.
    """
    prompted = prompted.float()
    targets = targets.to(device=prompted.device, dtype=torch.float32).expand_as(prompted)
    return 1.0 - F.cosine_similarity(prompted, targets, dim=-1, eps=eps).mean()


class DORRegularizer:
    """Dynamic Outlier Regularization: keeps the prompted features of near-OOD outliers at their zero-shot features.

    Build the pool once per run (``build_pool``; :class:`~peft_dor.DORTrainer` does it at the start of ``train``), then
    for each training forward ``draw`` outliers, pass ``draw.model_kwargs()`` to the model's single forward and take
    ``loss(output, draw)``.

    Args:
        config: a :class:`DORConfig`; keyword arguments override its fields (or build one).

    Example:
        ```python
        dor = DORRegularizer(DORConfig(vocabulary=["tree", "river", "chair", "cloud"], pool_size=3))
        dor.build_pool(model)                      # scores the vocabulary against model's class names
        draw = dor.draw(step=0)
        out = model(pixel_values=x, labels=y, **draw.model_kwargs())
        loss = out.loss + dor.weight * dor.loss(out, draw)
        ```
    """

    def __init__(self, config: DORConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = DORConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        self.pool: OutlierPool | None = None
        self.sampler: OutlierSampler | None = None
        #: λ in use: ``config.weight``, or the method's default once the pool is built
        self.weight: float | None = config.weight
        #: side in use: ``config.side``, or the method's default once the pool is built
        self.side: str | None = config.side
        self.num_outliers: int | None = None
        self.seed: int | None = None
        self.method: str | None = None
        self._wrapper_ref = None
        self._image_targets: dict[int, torch.Tensor] = {}

    @property
    def is_built(self) -> bool:
        return self.pool is not None

    def cache_root(self):
        return self.config.cache_dir or default_cache_dir()

    def build_pool(
        self, model, class_names: Sequence[str] | None = None, *, seed: int | None = None, progress: bool = True
    ) -> OutlierPool:
        """Select the outlier pool for the training classes and set up the sampler (once per run).

        Args:
            model: the prompt model (``PeftModel``, its DDP wrapper, or the ``PromptCLIP``).
            class_names: the training classes; default: the model's current class names.
            seed: the run seed, used when ``config.seed`` is None (default 0).
            progress: show a progress bar while encoding the vocabulary.
        """
        config = self.config
        wrapper = unwrap_prompt_model(model)
        names = list(wrapper.class_names if class_names is None else class_names)
        self.seed = config.seed if config.seed is not None else int(seed or 0)
        self.method = method_key(wrapper)
        weight, side = method_defaults(wrapper)
        self.weight = config.weight if config.weight is not None else weight
        self.side = config.side or side
        self.num_outliers = config.num_outliers or len(names)
        if self.side == "text":
            terms = load_vocabulary(config.vocabulary, self.cache_root())
            class_keys = {term_key(name) for name in names}
            # Every candidate can be counted before the expensive encoding (terms too long for the tower aside).
            pool_size = self._pool_size_for(sum(term_key(term) not in class_keys for term in terms))
            feature_cache = os.path.join(self.cache_root(), "dor") if config.cache_features else None
            pool = build_text_pool(
                wrapper,
                terms,
                names,
                pool_size=pool_size,
                selection=config.selection,
                template=config.template,
                class_template=config.class_template,
                seed=self.seed,
                cache_dir=feature_cache,
                batch_size=config.batch_size,
                progress=progress,
            )
            pool.features = pool.features.to(wrapper.device)
            if config.pool_size is not None:
                self._pool_size_for(len(pool))
        else:
            check_outlier_images(config.outlier_images)
            pool = build_image_pool(len(config.outlier_images), config.pool_size or DEFAULT_POOL_SIZE, self.seed)
            self._image_targets = {}
        if config.num_outliers is not None and config.num_outliers > len(pool):
            raise ValueError(
                f"`num_outliers`={config.num_outliers} but the outlier pool holds only {len(pool)} entries; lower "
                "num_outliers or give more outliers."
            )
        self.sampler = OutlierSampler(
            len(pool), self.num_outliers, self.seed, config.sampling, pool.scores, config.temperature
        )
        self._wrapper_ref = weakref.ref(wrapper)
        self.pool = pool
        return pool

    def _pool_size_for(self, candidates: int) -> int:
        """The pool size to select: ``config.pool_size``, which must not exceed the candidates, or when unset all
        candidates up to :data:`DEFAULT_POOL_SIZE`."""
        if self.config.pool_size is None:
            if candidates < 1:
                raise ValueError(
                    "The vocabulary has only 0 terms that are not class names, so DOR has no outliers; give a "
                    "vocabulary with other words (DORConfig(vocabulary=...))."
                )
            return min(candidates, DEFAULT_POOL_SIZE)
        if candidates < self.config.pool_size:
            raise ValueError(
                f"`pool_size`={self.config.pool_size} but the vocabulary has only {candidates} terms that are not class "
                "names (and fit the text tower); pass pool_size <= that number (it is the whole vocabulary then) or a "
                "larger vocabulary, or leave pool_size unset for all of them."
            )
        return self.config.pool_size

    def check_model(self, model) -> str:
        """Check that DOR as configured can regularise ``model`` and return the side it acts on; cheap (no vocabulary
        is loaded), so :class:`~peft_dor.DORTrainer` calls it before training starts.

        Raises:
            TypeError: ``model`` is not a peft-dor prompt model.
            ValueError: the side has no prompts to regularise (text-side DOR on VPT, image-side DOR on CoOp), image-side
                DOR has no usable ``outlier_images``, or they have another size than the model's images.
        """
        wrapper = unwrap_prompt_model(model)
        side = self.config.side or method_defaults(wrapper)[1]
        clip = wrapper.clip
        tower = clip.text_model if side == "text" else clip.vision_model
        if not any(isinstance(module, PromptLayer) for module in tower.modules()):
            other = "image" if side == "text" else "text"
            raise ValueError(
                f"DOR side={side!r} pulls the {side} features of outliers back to zero-shot, but this model has no "
                f"{side} prompts, so the loss would be constant. Use side={other!r}"
                + (" with `outlier_images`" if other == "image" else "")
                + " or side=None for the method's default."
            )
        if side == "image":
            images = self.config.outlier_images
            check_outlier_images(images)
            size = clip.config.vision_config.image_size
            if isinstance(images, torch.Tensor) and tuple(images.shape[-2:]) != (size, size):
                raise ValueError(
                    f"`outlier_images` are {tuple(images.shape[-2:])} pixels but the model takes {size}x{size} images; "
                    "preprocess them with the model's CLIP image processor."
                )
        return side

    # ------------------------------------------------------------------------------------------------------ drawing
    def draw(self, step: int = 0, micro_step: int = 0, epoch: int = 0, accumulation_steps: int = 1) -> OutlierDraw:
        """The outliers of one training forward, a pure function of (seed, step, micro-batch) or (seed, epoch).

        Args:
            step: the optimiser step (``state.global_step``).
            micro_step: index of the micro-batch within the step under gradient accumulation.
            epoch: the epoch index (used with ``resample="epoch"``).
            accumulation_steps: gradient-accumulation steps (micro-batches per step).
        """
        if self.pool is None:
            raise RuntimeError("Call `build_pool(model)` before drawing outliers (DORTrainer does it in `train`).")
        number = draw_number(self.config.resample, step, micro_step, epoch, accumulation_steps)
        positions = self.sampler.indices(number)
        if self.pool.names is not None:
            names = [self.pool.names[i] for i in positions.tolist()]
            targets = self.pool.features[positions.to(self.pool.features.device)]
            return OutlierDraw(positions, names, None, targets)
        pixels = self._pixels(self.pool.indices[positions])
        return OutlierDraw(positions, None, pixels, self._image_targets_for(positions, pixels))

    def _wrapper(self):
        wrapper = None if self._wrapper_ref is None else self._wrapper_ref()
        if wrapper is None:
            raise RuntimeError("The model the pool was built for no longer exists; call `build_pool` again.")
        return wrapper

    def _pixels(self, image_indices: torch.LongTensor) -> torch.Tensor:
        images = self.config.outlier_images
        if isinstance(images, torch.Tensor):
            pixels = images[image_indices]
        else:
            items = [images[int(i)] for i in image_indices.tolist()]
            items = [item["pixel_values"] if isinstance(item, Mapping) else item for item in items]
            pixels = torch.stack([torch.as_tensor(np.asarray(item)) for item in items])
        return pixels.to(device=self._wrapper().device, dtype=torch.float32)

    def _image_targets_for(self, positions: torch.LongTensor, pixels: torch.Tensor) -> torch.Tensor:
        """Zero-shot image features of the drawn outlier images, computed the first time each image is drawn.

        Targets are encoded in fixed blocks of :data:`IMAGE_TARGET_BLOCK` pool positions, never in the draw's own
        grouping: a batched forward's float rounding depends on the batch, so a resumed run (whose cache starts
        empty) would otherwise get targets that differ in the last bits from the uninterrupted run's.
        """
        wrapper = self._wrapper()
        blocks = sorted({p // IMAGE_TARGET_BLOCK for p in positions.tolist() if p not in self._image_targets})
        for block in blocks:
            block_positions = torch.arange(
                block * IMAGE_TARGET_BLOCK, min((block + 1) * IMAGE_TARGET_BLOCK, len(self.pool))
            )
            block_pixels = self._pixels(self.pool.indices[block_positions])
            with torch.autocast(wrapper.device.type, enabled=False):
                features = wrapper.zero_shot_image_features(block_pixels).float()
            for row, position in enumerate(block_positions.tolist()):
                self._image_targets[position] = features[row]
        return torch.stack([self._image_targets[int(p)] for p in positions.tolist()])

    # ------------------------------------------------------------------------------------------------------- the loss
    def loss(self, output, draw: OutlierDraw) -> torch.Tensor:
        """Unweighted DOR loss ``1 - mean cos`` of the model output of a forward that received ``draw.model_kwargs()``.

        Returns a float32 scalar; multiply by :attr:`weight` for the training objective.
        """
        attr = "extra_text_embeds" if draw.names is not None else "extra_image_embeds"
        # A ModelOutput has the attribute even when it is None (its mapping view drops None entries); a dict may not.
        prompted = getattr(output, attr, None) if hasattr(output, attr) else dict(output).get(attr)
        if prompted is None:
            raise ValueError(
                f"The model output has no `{attr}`: pass `**draw.model_kwargs()` to the same forward that computes "
                "the classification loss."
            )
        return outlier_drift(prompted, draw.targets, self.config.eps)

    __call__ = loss
