"""Pre-train the world CLIP: ``python -m peft_dor.world.pretrain --output_dir DIR``.

A transformers ``CLIPModel`` (about 0.2 M parameters) learns the world contrastively. Each step renders a fresh batch
of images (random nouns and sizes) and one caption per image; every caption in the batch that is true of an image is
a positive for it (a noun caption names its noun, an attribute caption only some attributes), so the targets are the
normalised match matrix in both directions rather than the identity.

The logit scale is **fixed** during pre-training (``--train_logit_scale``): a learned one ends low at this scale and
leaves zero-shot under-confident. After training, the scale the model ships with is fitted on held-out pre-training
images (fresh renders of every noun from their own seed, never the demo's images): the value that minimises the
zero-shot negative log-likelihood over all nouns with ``"a photo of a {}."``, i.e. temperature scaling on held-out
pre-training data. ``pretrain_log.json`` records the curve, the fit and every setting.

``--backbone siglip`` trains a transformers ``SiglipModel`` of the same tower sizes on the same world, data, steps and
schedule, with SigLIP's sigmoid loss (a pairwise logistic loss, every true caption a positive) and its learnable logit
scale and bias (initialised at log 10 and -10, as in the SigLIP paper); texts are padded to a fixed length with no
attention mask, as SigLIP was pre-trained and as the library runs it. The shipped scale is fitted the same way, and
the bias is then refitted for the pairwise sigmoid on the same held-out images. Only the model class, its config, the
loss and whether the scale is learned differ (:mod:`peft_dor.world.recipes`).

Everything is seeded; the same arguments give the same weights on the same machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .recipes import (  # noqa: F401  (re-exported: the recipe names belong to the pre-training API)
    RECIPES,
    SIGLIP_TEXT_LENGTH,
    Recipe,
    multi_positive_loss,
    sigmoid_loss,
    world_clip_config,
    world_siglip_config,
)
from .tokenizer import build_single_token_tokenizer, multi_token_words
from .world import COLOURS, NOUN_TEMPLATES, PATTERNS, SHAPES, SIZES, World, build_world, render_batch

#: CLIP's image normalisation (what CLIPImageProcessor applies)
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = NOUN_TEMPLATES[0]
# Tags that keep the random streams of training batches and held-out images apart.
_TRAIN_TAG, _HELD_OUT_TAG = 1, 2


@dataclass
class PretrainConfig:
    """Settings of a pre-training run (all recorded in ``pretrain_log.json``)."""

    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    train_logit_scale: float = 30.0
    noun_caption_fraction: float = 0.6
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    patch_size: int = 8
    projection_dim: int = 64
    held_out_per_noun: int = 10
    eval_every: int = 250
    seed: int = 0
    world_seed: int = 0
    threads: int | None = None
    backbone: str = "clip"

    def __post_init__(self) -> None:
        if self.backbone not in RECIPES:
            raise ValueError(f"`backbone` must be one of {sorted(RECIPES)}; got {self.backbone!r}.")
        for name in ("steps", "batch_size", "hidden_size", "num_layers", "num_heads", "held_out_per_noun"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {getattr(self, name)!r}.")
        if self.train_logit_scale <= 0 or self.learning_rate <= 0:
            raise ValueError("`train_logit_scale` and `learning_rate` must be positive.")
        if not 0.0 <= self.noun_caption_fraction <= 1.0:
            raise ValueError(f"`noun_caption_fraction` must be in [0, 1]; got {self.noun_caption_fraction}.")


def image_processor(image_size: int = 32):
    """A CLIP image processor for ``image_size`` px images: rescale and normalise (resize and crop are no-ops)."""
    try:
        from transformers import CLIPImageProcessorPil as processor_cls
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as processor_cls
    return processor_cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def pixel_values(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 images -> ``(N, 3, H, W)`` normalised tensor, as the image processor makes it."""
    x = torch.from_numpy(images).float().div_(255.0)
    x = (x - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)
    return x.permute(0, 3, 1, 2).contiguous()


def _codes(world: World, nouns, sizes) -> np.ndarray:
    """Per image: (noun, size, colour, shape, pattern) as integer codes."""
    noun_index = {n: i for i, n in enumerate(world.nouns)}
    rows = []
    for noun, size in zip(nouns, sizes, strict=True):
        a = world.noun_attributes[noun]
        rows.append(
            (
                noun_index[noun],
                SIZES.index(size),
                list(COLOURS).index(a["colour"]),
                SHAPES.index(a["shape"]),
                PATTERNS.index(a["pattern"]),
            )
        )
    return np.array(rows, dtype=np.int64)


def caption_constraints(world: World, caption: str) -> np.ndarray:
    """What a caption says, as the codes of :func:`_codes` with -1 where it says nothing."""
    words = caption.rstrip(".").split()
    vocab = {
        0: {n: i for i, n in enumerate(world.nouns)},
        1: {s: i for i, s in enumerate(SIZES)},
        2: {c: i for i, c in enumerate(COLOURS)},
        3: {s: i for i, s in enumerate(SHAPES)},
        4: {p: i for i, p in enumerate(PATTERNS)},
    }
    out = np.full(5, -1, dtype=np.int64)
    for word in words:
        for slot, table in vocab.items():
            if word in table:
                out[slot] = table[word]
    return out


def match_matrix(image_codes: np.ndarray, constraints: np.ndarray) -> np.ndarray:
    """``M[i, j]``: caption ``j`` is true of image ``i`` (every constraint is unset or equal)."""
    c = constraints[None, :, :]
    return ((c == -1) | (c == image_codes[:, None, :])).all(axis=-1)


def text_inputs(model, tokenizer, texts) -> dict:
    """Tokenised ``texts`` as ``model``'s text tower takes them: padded to the longest with a mask (CLIP), or to the
    backbone's fixed length with no mask (SigLIP), as :mod:`peft_dor.prompting.backbone` records."""
    from ..prompting.backbone import text_rules

    length = text_rules(model).fixed_length
    if length is None:
        return dict(tokenizer(texts, padding=True, return_tensors="pt"))
    text = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return {"input_ids": text["input_ids"]}


def logits_of(model, image_features: torch.Tensor, text_features: torch.Tensor, scale=None) -> torch.Tensor:
    """``scale * cos (+ bias)`` of normalised features, with the model's bias where it has one."""
    from ..prompting.backbone import logit_bias

    scale = model.logit_scale.exp() if scale is None else scale
    logits = scale * image_features @ text_features.t()
    bias = logit_bias(model)
    return logits if bias is None else logits + bias


def _rng(seed: int, tag: int, step: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag, step]))


def training_batch(world: World, config: PretrainConfig, step: int, tokenizer, model):
    """Images, tokenised captions and the match matrix of training step ``step`` (a pure function of the seed)."""
    rng = _rng(config.seed, _TRAIN_TAG, step)
    nouns = [world.nouns[i] for i in rng.integers(len(world.nouns), size=config.batch_size)]
    sizes = [SIZES[i] for i in rng.integers(len(SIZES), size=config.batch_size)]
    images = render_batch(world, nouns, sizes, rng)
    captions = [
        world.sample_caption(n, s, rng, config.noun_caption_fraction) for n, s in zip(nouns, sizes, strict=True)
    ]
    constraints = np.stack([caption_constraints(world, c) for c in captions])
    matches = match_matrix(_codes(world, nouns, sizes), constraints)
    return pixel_values(images), text_inputs(model, tokenizer, captions), torch.from_numpy(matches)


def held_out_set(world: World, per_noun: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_noun`` fresh images of every noun (half big, half small) from their own random stream, and labels."""
    rng = _rng(seed, _HELD_OUT_TAG)
    nouns = [n for n in world.nouns for _ in range(per_noun)]
    sizes = [SIZES[i % len(SIZES)] for i in range(len(nouns))]
    labels = torch.tensor([i for i in range(len(world.nouns)) for _ in range(per_noun)])
    return pixel_values(render_batch(world, nouns, sizes, rng)), labels


@torch.no_grad()
def zero_shot_similarities(model, tokenizer, nouns, pixels: torch.Tensor, template: str = ZERO_SHOT_TEMPLATE):
    """Cosine similarities ``(N images, C nouns)`` of the images to ``template`` prompts of ``nouns``."""
    was_training = model.training
    model.eval()
    text = text_inputs(model, tokenizer, [template.format(n) for n in nouns])
    text_features = F.normalize(model.get_text_features(**text).pooler_output, dim=-1)
    image_features = torch.cat(
        [
            F.normalize(model.get_image_features(pixel_values=chunk).pooler_output, dim=-1)
            for chunk in pixels.split(500)
        ]
    )
    model.train(was_training)
    return image_features @ text_features.t()


def fit_logit_scale(similarities: torch.Tensor, labels: torch.Tensor) -> float:
    """The logit scale minimising the NLL of ``softmax(scale * similarities)`` (a 1-D convex search over log scale)."""
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_scale], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    sims = similarities.double()

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(log_scale.exp() * sims, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_scale.detach().exp().item()


def fit_logit_bias(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The bias minimising the pairwise sigmoid NLL of ``logits + bias`` (each image matches its label only)."""
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([bias], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.double()
    targets = F.one_hot(labels, logits.shape[1]).double()

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(logits + bias, targets, reduction="sum") / len(logits)
        loss.backward()
        return loss

    optimizer.step(closure)
    return bias.detach().item()


def _lr(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(
    output_dir: str | os.PathLike, config: PretrainConfig | None = None, overwrite: bool = False, progress=True
):
    """Pre-train a world CLIP (or SigLIP: ``config.backbone``) and save it, with its tokenizer, processor and
    ``world.json``, to ``output_dir``.

    Returns:
        The run's log: settings, the held-out zero-shot curve, the fitted logit scale (SigLIP: also the learned
        scale and bias and the fitted bias) and the final held-out metrics.
    """
    import transformers
    from tqdm.auto import tqdm

    config = config or PretrainConfig()
    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds a model; pass --overwrite_output_dir (overwrite=True) to replace it."
        )
    if config.threads:
        torch.set_num_threads(config.threads)
    world = build_world(config.world_seed)
    tokenizer = build_single_token_tokenizer(world.words)
    recipe = RECIPES[config.backbone]
    torch.manual_seed(config.seed)
    model = getattr(transformers, recipe.model_class)(recipe.build_config(tokenizer, config, world.image_size))
    if recipe.learn_scale:
        with torch.no_grad():
            model.logit_scale.fill_(recipe.init_scale_bias[0])
            model.logit_bias.fill_(recipe.init_scale_bias[1])
    else:
        model.logit_scale.requires_grad_(False)  # fixed temperature during pre-training
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    held_pixels, held_labels = held_out_set(world, config.held_out_per_noun, config.seed)
    curve = []
    start = time.time()
    bar = tqdm(range(config.steps), desc=f"pre-training the world {recipe.model_class}", disable=not progress)
    model.train()
    fixed_scale = None if recipe.learn_scale else config.train_logit_scale
    for step in bar:
        pixels, text, matches = training_batch(world, config, step, tokenizer, model)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        image_features = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text_features = F.normalize(model.get_text_features(**text).pooler_output, dim=-1)
        loss = recipe.loss(logits_of(model, image_features, text_features, fixed_scale), matches)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            sims = zero_shot_similarities(model, tokenizer, world.nouns, held_pixels)
            accuracy = float((sims.argmax(1) == held_labels).float().mean())
            curve.append({"step": step + 1, "loss": round(loss.item(), 4), "held_out_accuracy": accuracy})
            bar.set_postfix(loss=f"{loss.item():.3f}", zero_shot=f"{accuracy:.3f}")
            bar.write(json.dumps(curve[-1]))
    sims = zero_shot_similarities(model, tokenizer, world.nouns, held_pixels)
    train_scale = model.logit_scale.exp().item() if recipe.learn_scale else config.train_logit_scale
    fitted = fit_logit_scale(sims, held_labels)
    final = {
        "held_out_accuracy": float((sims.argmax(1) == held_labels).float().mean()),
        "held_out_nll_at_train_scale": float(F.cross_entropy(train_scale * sims, held_labels)),
        "held_out_nll_at_fitted_scale": float(F.cross_entropy(fitted * sims, held_labels)),
    }
    fitted_bias = {}
    if recipe.learn_scale:  # the bias that goes with the fitted scale, for the pairwise sigmoid
        fitted_bias = {"learned_logit_scale": train_scale, "learned_logit_bias": model.logit_bias.item()}
        fitted_bias["fitted_logit_bias"] = fit_logit_bias(fitted * sims, held_labels)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(fitted))
        if fitted_bias:
            model.logit_bias.fill_(fitted_bias["fitted_logit_bias"])
    log = {
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "curve": curve,
        "fitted_logit_scale": fitted,
        **fitted_bias,
        "final": final,
        "seconds": round(time.time() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    save_world_clip(output_dir, model, tokenizer, world, log)
    return log


def save_world_clip(output_dir: str | os.PathLike, model, tokenizer, world: World, log: dict) -> str:
    """Write the model (safetensors), tokenizer, image processor, ``world.json`` and ``pretrain_log.json``."""
    broken = multi_token_words(tokenizer, world.words)
    if broken:
        raise RuntimeError(f"World words that are not one token: {sorted(broken)}.")
    from ..prompting.backbone import text_rules

    length = text_rules(model).fixed_length
    if length is not None:  # `padding="max_length"` then pads to the length the tower runs at, as SigLIP's tokenizer
        tokenizer.model_max_length = length
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    image_processor(world.image_size).save_pretrained(output_dir)
    world.save(output_dir)
    (output_dir / "pretrain_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return str(output_dir)


def parse_args(argv=None) -> tuple[str, PretrainConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m peft_dor.world.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Folder to write the world model to.")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="Replace a model already in output_dir.")
    defaults = PretrainConfig()
    for name, value in asdict(defaults).items():
        kind = int if name == "threads" else type(value)
        choices = sorted(RECIPES) if name == "backbone" else None
        parser.add_argument(f"--{name}", type=kind, default=value, choices=choices, help=f"(default: {value})")
    args = vars(parser.parse_args(argv))
    output_dir, overwrite = args.pop("output_dir"), args.pop("overwrite_output_dir")
    return output_dir, PretrainConfig(**args), overwrite


def main(argv=None) -> dict:
    output_dir, config, overwrite = parse_args(argv)
    log = pretrain(output_dir, config, overwrite=overwrite)
    print(json.dumps({"output_dir": output_dir, **log["final"], "fitted_logit_scale": log["fitted_logit_scale"]}))
    return log


if __name__ == "__main__":
    main()
