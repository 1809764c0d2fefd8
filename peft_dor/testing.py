"""A tiny CLIP, a tiny SigLIP and their tokenizers built offline, for tests, the demo and the docs.

``build_tiny_clip(path)`` writes a real ``CLIPModel`` (random weights from a seed, a small ``CLIPConfig``), a real
``CLIPTokenizer`` (CLIP's byte-level BPE with a small vocabulary) and a ``CLIPImageProcessor`` to ``path``, so that
``CLIPModel.from_pretrained(path)`` and the tokenizer lookup by ``name_or_path`` work with no network.
``build_tiny_siglip(path)`` does the same for SigLIP: a real ``SiglipModel``, a real ``SiglipTokenizer`` over a small
SentencePiece model trained on the spot (needs the ``sentencepiece`` package) and a ``SiglipImageProcessor``.

Example:
    ```python
    from transformers import CLIPModel
    from peft_dor.testing import build_tiny_clip

    path = build_tiny_clip("/tmp/tiny-clip")
    clip = CLIPModel.from_pretrained(path)
    ```
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .cache import cache_root
from .world.tokenizer import bytes_to_unicode, single_token_vocabulary

#: words that are single tokens of the tiny vocabulary
TINY_WORDS = (
    "a an the of photo picture type texture pet flower food aircraft centered satellite person doing "
    "x cat dog bird fish horse frog deer ship truck car plane boat tree rose tulip apple banana pizza "
    "red green blue yellow circle square stripe dot noise forest river lake mountain road building "
    "crop land sea house chair table lamp cup book phone clock bottle shoe hat shirt ball kite"
).split()

TINY_CONFIG = {
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    "vision": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    },
    "projection_dim": 24,
}


#: the vision tower of ViT-B/16 (CLIP's and SigLIP's B/16 alike): 768 x 12 layers, 12 heads, patch 16, 224 px
B16_VISION_SIZE = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
}

#: ``tiny_clip_config`` overrides that give ViT-B/16's shapes (text 512 x 12 layers, vision 768 x 12 layers, patch 16,
#: 224 px, projection 512): parameter counts of prompt methods at the real size, with random weights
VIT_B16_SIZE = {
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8},
    "vision_config": dict(B16_VISION_SIZE),
    "projection_dim": 512,
}


# CLIP's byte table, under the name benchmarks already import
_bytes_to_unicode = bytes_to_unicode


def tiny_vocabulary(words=TINY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style BPE vocabulary and merges in which every word of ``words`` is exactly one token.

    Every byte (alone and word-final) plus each word's merges left to right, and, where BPE's rank order would still
    split a word, the merges that join its pieces (:func:`peft_dor.world.tokenizer.single_token_vocabulary`).
    """
    return single_token_vocabulary(words)


def build_tiny_tokenizer(words=TINY_WORDS):
    """A real ``CLIPTokenizer`` over the tiny vocabulary."""
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocabulary(words)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_clip_config(vocab_size: int, bos_token_id: int, eos_token_id: int, **overrides):
    """A small ``CLIPConfig`` with the tiny tokenizer's special ids (77 text positions, 32 px images)."""
    from transformers import CLIPConfig

    text = dict(TINY_CONFIG["text"], vocab_size=vocab_size, max_position_embeddings=77)
    text.update(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id)
    text.update(overrides.pop("text_config", {}))
    vision = dict(TINY_CONFIG["vision"], **overrides.pop("vision_config", {}))
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=overrides.pop("projection_dim", 24), **overrides
    )


def _image_processor(image_size: int):
    try:
        from transformers import CLIPImageProcessorPil as processor_cls
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as processor_cls
    return processor_cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def build_tiny_clip(output_dir: str | os.PathLike | None = None, seed: int = 0, overwrite: bool = False, **overrides):
    """Write a tiny random ``CLIPModel`` with its tokenizer and image processor to ``output_dir`` and return the path.

    Args:
        output_dir: where to save; defaults to ``$PEFT_DOR_CACHE`` (or ``~/.cache/peft_dor``)/``tiny-clip-<seed>-<hash>``.
        seed: seed of the random weights; the same seed gives the same model.
        overwrite: rebuild even if the directory already holds a model.
        **overrides: ``text_config`` / ``vision_config`` dicts and ``projection_dim`` to change the size.
    """

    if output_dir is None:
        # the vocabulary is part of the key: a folder cached by an older tokenizer builder is not reused
        key = json.dumps({"overrides": overrides, "vocab": tiny_vocabulary()}, sort_keys=True)
        output_dir = cache_root() / f"tiny-clip-{seed}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and not overwrite:
        return str(output_dir)
    tokenizer = build_tiny_tokenizer()
    config = tiny_clip_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, **overrides)
    return save_random_clip(config, tokenizer, output_dir, seed)


def save_random_clip(config, tokenizer, output_dir: str | os.PathLike, seed: int = 0) -> str:
    """Write a ``CLIPModel`` with random weights from ``seed``, its tokenizer and image processor to ``output_dir``."""
    from transformers import CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    _image_processor(config.vision_config.image_size).save_pretrained(output_dir)
    return str(output_dir)


def build_demo_clip(
    output_dir: str | os.PathLike,
    image_folder: str | os.PathLike,
    *,
    template: str = "a photo of a {}.",
    steps: int = 20,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> str:
    """The tiny CLIP of :func:`build_tiny_clip`, given some zero-shot skill on the synthetic images
    (:mod:`peft_dor.data.synthetic`).

    A random tiny CLIP classifies the synthetic images at chance, so prompt tuning has nothing to adjust. This plays
    the part of CLIP's pre-training cheaply: only the two projection heads are fitted, for a few ``steps``, so that
    ``template`` prompts of the class names (sub-folders of ``image_folder/train``, all classes, as pre-training sees
    every concept) match their images. The towers stay random. Already built folders are reused.

    Returns:
        ``output_dir``, loadable with ``CLIPModel.from_pretrained`` (with its tokenizer and image processor).
    """
    import shutil

    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer, CLIPModel

    from .data.loaders import load_image_folder
    from .data.transforms import CLIPImageTransform, load_image_processor

    output_dir = Path(output_dir)
    marker = output_dir / ".demo-clip"
    expected = f"{os.fspath(image_folder)}|{template}|{steps}|{learning_rate}|{seed}"
    if marker.exists() and marker.read_text() == expected:
        return str(output_dir)
    base = build_tiny_clip(output_dir.with_name(output_dir.name + "-base"), seed=seed)
    train = load_image_folder(image_folder)["train"]
    names = [n.replace("_", " ") for n in train.features["label"].names]
    transform = CLIPImageTransform(load_image_processor(base))
    clip = CLIPModel.from_pretrained(base).eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    with torch.no_grad():
        pixels = transform.pixel_values(
            list(train.cast_column("image", type(train.features["image"])(decode=False))["image"])
        )
        vision = clip.vision_model(pixel_values=pixels).pooler_output
        text_inputs = tokenizer([template.format(n) for n in names], padding=True, return_tensors="pt")
        text = clip.text_model(**text_inputs).pooler_output
    labels = torch.tensor(train["label"])
    heads = [clip.visual_projection.weight, clip.text_projection.weight]
    for head in heads:
        head.requires_grad_(True)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(heads, lr=learning_rate)
    scale = clip.logit_scale.exp().detach()
    for _ in range(steps):
        image_features = F.normalize(vision @ heads[0].t(), dim=-1)
        text_features = F.normalize(text @ heads[1].t(), dim=-1)
        loss = F.cross_entropy(scale * image_features @ text_features.t(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for head in heads:
        head.requires_grad_(False)
    clip.save_pretrained(output_dir)
    for name in os.listdir(base):  # tokenizer and image processor files
        if not (output_dir / name).exists():
            shutil.copyfile(Path(base) / name, output_dir / name)
    marker.write_text(expected)
    return str(output_dir)


#: ``build_tiny_siglip`` sizes: like the tiny CLIP's, with SigLIP's 64 text positions; the joint width is the vision
#: width (SigLIP's vision head does not project), so the text head projects to it
TINY_SIGLIP_CONFIG = {
    "text": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 64,
        "projection_size": 32,
    },
    "vision": dict(TINY_CONFIG["vision"]),
}
#: the tiny SigLIP's logit scale and bias (log 10 and -2.5): a bias far from 0, so tests see it is added
TINY_SIGLIP_LOGITS = {"logit_scale": 2.302585092994046, "logit_bias": -2.5}

#: ``tiny_siglip_config`` overrides that give SigLIP-B/16's shapes (google/siglip-base-patch16-224: text and vision
#: 768 x 12 layers, 64 text positions, vocabulary 32,000, patch 16, 224 px): parameter counts at the real size
SIGLIP_B16_SIZE = {
    "text_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 64,
        "projection_size": 768,
        "vocab_size": 32000,
    },
    "vision_config": dict(B16_VISION_SIZE),
}

#: the SentencePiece trainer's settings for the tiny SigLIP tokenizer (part of the cache key)
_SPM_SETTINGS = {
    "model_type": "unigram",
    "pad_id": 0,
    "eos_id": 1,
    "unk_id": 2,
    "bos_id": -1,
    "character_coverage": 1.0,
    "hard_vocab_limit": False,
    "num_threads": 1,
    "minloglevel": 2,
}


def train_tiny_sentencepiece(path: str | os.PathLike, words=TINY_WORDS) -> str:
    """Train a SentencePiece unigram model in which every word of ``words`` is one piece (the rest falls back to
    letters) and write it to ``path``; takes a few hundredths of a second. SigLIP's ids: pad 0, EOS 1, unknown 2,
    no BOS."""
    import io
    import string

    import sentencepiece as spm

    words = list(words)
    letters = sorted(set("".join(words)) | set(string.ascii_lowercase))
    # every word once per rotation of the list: equal counts, so the unigram model keeps each word whole
    sentences = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        vocab_size=len(words) + len(letters) + 20,
        **_SPM_SETTINGS,
    )
    Path(path).write_bytes(buffer.getvalue())
    return str(path)


def build_tiny_siglip_tokenizer(words=TINY_WORDS, workdir: str | os.PathLike | None = None):
    """A real ``SiglipTokenizer`` over a SentencePiece model of ``words`` trained in ``workdir`` (a temp dir by
    default); save it with ``save_pretrained`` to keep it."""
    import tempfile

    from transformers import SiglipTokenizer

    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return build_tiny_siglip_tokenizer(words, tmp)
    model_file = train_tiny_sentencepiece(Path(workdir) / "spiece.model", words)
    return SiglipTokenizer(vocab_file=model_file)


def tiny_siglip_config(vocab_size: int, pad_token_id: int, eos_token_id: int, **overrides):
    """A small ``SiglipConfig`` with the tiny tokenizer's special ids (64 text positions, 32 px images, no BOS)."""
    from transformers import SiglipConfig

    text = dict(TINY_SIGLIP_CONFIG["text"], vocab_size=vocab_size)
    text.update(pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=None)
    text.update(overrides.pop("text_config", {}))
    vision = dict(TINY_SIGLIP_CONFIG["vision"], **overrides.pop("vision_config", {}))
    return SiglipConfig(text_config=text, vision_config=vision, **overrides)


def _siglip_image_processor(image_size: int):
    from transformers import SiglipImageProcessorPil

    return SiglipImageProcessorPil(size={"height": image_size, "width": image_size})


def build_tiny_siglip(
    output_dir: str | os.PathLike | None = None, seed: int = 0, overwrite: bool = False, **overrides
) -> str:
    """Write a tiny random ``SiglipModel`` with its ``SiglipTokenizer`` and image processor to ``output_dir`` and
    return the path (``SiglipModel.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)`` then work
    offline).

    The weights are random from ``seed``; ``logit_scale`` and ``logit_bias`` are set to :data:`TINY_SIGLIP_LOGITS`
    (transformers initialises both to 0, which would hide a missing bias).

    Args:
        output_dir: where to save; defaults to ``$PEFT_DOR_CACHE`` (or ``~/.cache/peft_dor``)/``tiny-siglip-<seed>-<hash>``.
        seed: seed of the random weights; the same seed gives the same model.
        overwrite: rebuild even if the directory already holds a model.
        **overrides: ``text_config`` / ``vision_config`` dicts to change the size (e.g. :data:`SIGLIP_B16_SIZE`).

    Example:
        ```python
        from transformers import SiglipModel
        from peft_dor.testing import build_tiny_siglip

        siglip = SiglipModel.from_pretrained(build_tiny_siglip("/tmp/tiny-siglip"))
        ```
    """
    if output_dir is None:
        key = json.dumps(
            {"overrides": overrides, "words": TINY_WORDS, "spm": _SPM_SETTINGS, "logits": TINY_SIGLIP_LOGITS},
            sort_keys=True,
        )
        output_dir = cache_root() / f"tiny-siglip-{seed}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and not overwrite:
        return str(output_dir)
    from transformers import SiglipModel

    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_siglip_tokenizer(workdir=output_dir)
    config = tiny_siglip_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, **overrides)
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(TINY_SIGLIP_LOGITS["logit_scale"])
        model.logit_bias.fill_(TINY_SIGLIP_LOGITS["logit_bias"])
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    _siglip_image_processor(config.vision_config.image_size).save_pretrained(output_dir)
    return str(output_dir)
