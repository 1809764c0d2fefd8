"""DOR's outlier pool and sampler.

The pool is selected **once per training run** from the training class names: every vocabulary term is scored by
the mean cosine between its zero-shot text feature and the zero-shot features of the classes, terms equal to a class
name are dropped, and ``pool_size`` terms are kept (the top ones for ``"near"``, the bottom ones for ``"far"``, a seeded
random subset for ``"random"``). The zero-shot features of the whole vocabulary are the expensive part: they are
encoded in batches without gradients and cached on disk, keyed by (base model, template, vocabulary), so a second run
reuses them. The pool keeps its terms' zero-shot features: they are DOR's targets, looked up, never re-encoded.

The sampler turns (seed, draw number) into outlier indices with no hidden state, so every rank of a DDP run draws the
same outliers and a resumed run draws what the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..prompting import PromptCLIP, embed_dim, text_projection
from .vocabulary import term_key, vocabulary_hash

logger = logging.getLogger(__name__)

SELECTIONS = ("near", "far", "random")
SAMPLINGS = ("uniform", "similarity", "cycle")
RESAMPLES = ("step", "epoch")
_FEATURE_CACHE_VERSION = 1
# Tags that keep the seed streams of the different random choices apart.
_POOL_TAG, _DRAW_TAG, _CYCLE_TAG, _IMAGE_POOL_TAG = 11, 23, 37, 41


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU ``torch.Generator`` whose seed is a pure function of the integers ``parts`` (e.g. seed, step, micro)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def unwrap_prompt_model(model) -> PromptCLIP:
    """The :class:`~peft_dor.prompting.PromptCLIP` inside a ``PeftModel``, a tuner, a DDP wrapper or itself."""
    seen = 0
    while not isinstance(model, PromptCLIP) and seen < 8:
        if hasattr(model, "module") and not hasattr(model, "get_base_model"):  # DDP and friends
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "model"):
            model = model.model
        seen += 1
    if not isinstance(model, PromptCLIP):
        raise TypeError(
            "DOR needs a peft-dor prompt model (get_peft_model(clip, CoOpConfig(...)) or its PromptCLIP); "
            f"got {type(model).__name__}."
        )
    return model


# ------------------------------------------------------------------------------------------------------------ encoding
@torch.no_grad()
def encode_zero_shot(
    wrapper: PromptCLIP,
    terms: Sequence[str],
    template: str = "a photo of a {}.",
    batch_size: int = 512,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.BoolTensor]:
    """Frozen CLIP's L2-normalised features of ``template.format(term)`` for every term, in float32 on the CPU.

    The model's frozen-features API (``PromptCLIP.frozen_text_features``: prompts suspended, batches of
    ``batch_size`` prompts of similar length) with autocast off and nothing cached in memory, so the features equal
    ``wrapper.zero_shot_text_features(terms, template)``. Terms whose prompt is longer than the text tower are skipped.

    Returns:
        ``(features, kept)``: ``features`` is ``(N, D)`` with zero rows for skipped terms, ``kept`` a ``(N,)`` mask.
    """
    kept = torch.tensor(wrapper.prompt_tokenizer.fits(terms, template), dtype=torch.bool)
    features = torch.zeros(len(terms), embed_dim(wrapper.clip), dtype=torch.float32)
    n_kept = int(kept.sum())
    if n_kept < len(terms):
        logger.warning(
            "DOR: %d vocabulary terms are too long for the text tower and are skipped.", len(terms) - n_kept
        )
    if n_kept:
        names = [term for term, fits in zip(terms, kept.tolist(), strict=True) if fits]
        with torch.autocast(wrapper.device.type, enabled=False):
            features[kept] = wrapper.frozen_text_features(
                names,
                template,
                cache=None,
                batch_size=batch_size,
                device="cpu",
                progress="DOR: encoding outlier vocabulary" if progress else None,
            )
    return features, kept


def model_fingerprint(wrapper: PromptCLIP) -> str:
    """Identifies the frozen text tower: checkpoint name, tokenizer, text config and a digest of some weights."""
    clip = wrapper.clip
    digest = hashlib.sha256()
    for module in (text_projection(clip), clip.text_model.final_layer_norm):
        for tensor in module.state_dict().values():
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    parts = {
        "name": str(getattr(clip, "name_or_path", "")),
        "tokenizer": str(wrapper.tokenizer_name_or_path or ""),
        "text_config": clip.config.text_config.to_json_string(use_diff=False),
        "projection_dim": embed_dim(clip),
        "weights": digest.hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def vocabulary_features(
    wrapper: PromptCLIP,
    terms: Sequence[str],
    template: str = "a photo of a {}.",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.BoolTensor]:
    """:func:`encode_zero_shot` with a disk cache keyed by (base model, template, vocabulary).

    Args:
        cache_dir: folder for ``dor-features-<key>.safetensors``; ``None`` disables the cache.
    """
    if cache_dir is None:
        return encode_zero_shot(wrapper, terms, template, batch_size, progress)
    from safetensors.torch import load_file, save_file

    key_parts = {
        "version": _FEATURE_CACHE_VERSION,
        "model": model_fingerprint(wrapper),
        "template": template,
        "vocabulary": vocabulary_hash(terms),
        "n_terms": len(terms),
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"dor-features-{key}.safetensors"
    if path.is_file():
        try:
            stored = load_file(str(path))
            if stored["features"].shape[0] == len(terms):
                return stored["features"], stored["kept"].bool()
        except Exception as error:  # a truncated or foreign file: recompute and overwrite
            logger.warning("DOR: ignoring unreadable feature cache %s (%s).", path, error)
    features, kept = encode_zero_shot(wrapper, terms, template, batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"features": features, "kept": kept.to(torch.uint8)}, str(tmp), metadata={"key": json.dumps(key_parts)})
    os.replace(tmp, path)  # atomic: ranks waiting on the main process never read a half-written file
    return features, kept


# ------------------------------------------------------------------------------------------------------------ the pool
@dataclass
class OutlierPool:
    """The outliers DOR draws from.

    Attributes:
        names: the pool's terms (text side) or ``None`` (image side).
        scores: ``(K,)`` mean cosine of each term to the training classes (zeros on the image side).
        features: ``(K, D)`` zero-shot features of the terms: DOR's targets (text side); ``None`` on the image side,
            whose targets are computed per image when first drawn.
        indices: ``(K,)`` positions of the pool's entries in the vocabulary (or the outlier image set).
        selection: ``"near"``, ``"far"`` or ``"random"``.
    """

    names: list[str] | None
    scores: torch.Tensor
    features: torch.Tensor | None
    indices: torch.LongTensor
    selection: str

    def __len__(self) -> int:
        return int(self.indices.numel())


def select_pool(
    scores: torch.Tensor, candidates: torch.BoolTensor, pool_size: int, selection: str = "near", seed: int = 0
) -> torch.LongTensor:
    """Indices of the pool among the candidate entries of ``scores``.

    ``"near"``: the ``pool_size`` highest scores, best first; ``"far"``: the lowest, lowest first; ``"random"``: a
    random subset seeded by ``seed``. Ties are broken by vocabulary order.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"`selection` must be one of {SELECTIONS}; got {selection!r}.")
    index = torch.nonzero(candidates, as_tuple=False).flatten()
    if len(index) < pool_size:
        logger.warning("DOR: only %d candidate outliers for pool_size=%d; using all of them.", len(index), pool_size)
    k = min(pool_size, len(index))
    if selection == "random":
        return index[torch.randperm(len(index), generator=seeded_generator(seed, _POOL_TAG))[:k]]
    order = torch.sort(scores[index], descending=selection == "near", stable=True).indices
    return index[order[:k]]


def build_text_pool(
    wrapper: PromptCLIP,
    terms: Sequence[str],
    class_names: Sequence[str],
    *,
    pool_size: int = 5000,
    selection: str = "near",
    template: str = "a photo of a {}.",
    class_template: str | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> OutlierPool:
    """Select DOR's outlier pool for ``class_names`` from ``terms``.

    Score ``s_i = mean_j cos(f(term_i), f(class_j))`` with frozen CLIP features of ``template`` (``class_template``
    for the classes, default the same); terms equal to a class name (case- and separator-insensitive) never enter.

    Example:
        ```python
        pool = build_text_pool(model.get_base_model(), wordnet_nouns(), ["cat", "dog"], pool_size=5000)
        pool.names[:3], pool.features.shape  # the nearest terms and their zero-shot targets (5000, D)
        ```
    """
    features, kept = vocabulary_features(wrapper, terms, template, cache_dir, batch_size, progress)
    class_features = wrapper.zero_shot_text_features(list(class_names), class_template or template).float().cpu()
    # mean_j <f_i, c_j> == <f_i, mean_j c_j>: one matrix-vector product instead of an (N, C) matrix.
    scores = features @ class_features.mean(dim=0)
    class_keys = {term_key(name) for name in class_names}
    candidates = kept & torch.tensor([term_key(term) not in class_keys for term in terms], dtype=torch.bool)
    index = select_pool(scores, candidates, pool_size, selection, seed)
    return OutlierPool(
        names=[terms[i] for i in index.tolist()],
        scores=scores[index].clone(),
        features=features[index].clone(),
        indices=index,
        selection=selection,
    )


def build_image_pool(n_images: int, pool_size: int, seed: int = 0) -> OutlierPool:
    """Image-side pool: every outlier image, or a seeded random subset of ``pool_size`` when there are more."""
    if n_images < 1:
        raise ValueError("`outlier_images` is empty; image-side DOR needs at least one outlier image.")
    index = torch.arange(n_images)
    if n_images > pool_size:
        index = torch.randperm(n_images, generator=seeded_generator(seed, _IMAGE_POOL_TAG))[:pool_size]
    return OutlierPool(None, torch.zeros(len(index)), None, index, "random")


# --------------------------------------------------------------------------------------------------------- the sampler
class OutlierSampler:
    """Draws ``num_outliers`` pool positions per draw as a pure function of ``(seed, draw)``.

    The draw number is the trainer's business: ``global_step * accumulation_steps + micro_batch`` per step
    (``resample="step"``), the epoch index per epoch (``resample="epoch"``). The same draw number always gives the same
    outliers, on every rank and after a resume.

    Args:
        pool_size: number of entries in the pool (K).
        num_outliers: outliers per draw (B); the whole pool when K <= B.
        seed: run seed.
        sampling: ``"uniform"`` (without replacement; the official code), ``"similarity"`` (without replacement,
            weights ``softmax(score / temperature)``) or ``"cycle"`` (shuffle the pool, then consume it in chunks of
            B; reshuffle when it is used up).
        scores: ``(K,)`` pool scores, needed for ``"similarity"``.
        temperature: softmax temperature of ``"similarity"``.

    Example:
        ```python
        sampler = OutlierSampler(pool_size=5000, num_outliers=24, seed=1)
        sampler.indices(draw=0)  # the same 24 positions on every rank, every time
        ```
    """

    def __init__(
        self,
        pool_size: int,
        num_outliers: int,
        seed: int = 0,
        sampling: str = "uniform",
        scores: torch.Tensor | None = None,
        temperature: float = 0.1,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"`sampling` must be one of {SAMPLINGS}; got {sampling!r}.")
        if pool_size < 1 or num_outliers < 1:
            raise ValueError(f"The pool ({pool_size}) and the number of outliers ({num_outliers}) must be positive.")
        self.pool_size = pool_size
        self.num_outliers = num_outliers
        self.seed = int(seed)
        self.sampling = sampling
        self.weights = None
        if sampling == "similarity":
            if scores is None or len(scores) != pool_size:
                raise ValueError("sampling='similarity' needs one score per pool entry.")
            self.weights = torch.softmax(scores.double().cpu() / temperature, dim=0)

    def indices(self, draw: int) -> torch.LongTensor:
        """Pool positions of draw number ``draw`` (``num_outliers`` of them, or the whole pool if it is smaller)."""
        k, b = self.pool_size, self.num_outliers
        if self.sampling == "cycle":
            chunks = max(k // b, 1)
            cycle, position = divmod(int(draw), chunks)
            order = torch.randperm(k, generator=seeded_generator(self.seed, _CYCLE_TAG, cycle))
            return order if k <= b else order[position * b : (position + 1) * b]
        if k <= b:
            return torch.arange(k)
        generator = seeded_generator(self.seed, _DRAW_TAG, int(draw))
        if self.sampling == "similarity":
            return torch.multinomial(self.weights, b, replacement=False, generator=generator)
        return torch.randperm(k, generator=generator)[:b]


def draw_number(resample: str, step: int, micro_step: int = 0, epoch: int = 0, accumulation_steps: int = 1) -> int:
    """Which draw a training forward makes: one per micro-batch (``"step"``) or one per epoch (``"epoch"``)."""
    if resample not in RESAMPLES:
        raise ValueError(f"`resample` must be one of {RESAMPLES}; got {resample!r}.")
    if resample == "epoch":
        return int(epoch)
    return int(step) * max(int(accumulation_steps), 1) + int(micro_step)
