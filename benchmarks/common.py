"""Shared helpers of the speed and memory benchmarks: the model sizes, class names, timing and the results files.

Every benchmark compares two implementations *in the same process, on the same inputs*, alternating them round by
round (A B A B ...) so that load from other processes hits both alike, and reports the ratio of the medians. The
absolute times depend on the machine and its load; the ratios are the result.

Sizes (``--size``):

* ``mid`` (default, for CPUs): a random CLIP with width 256 and 6 layers per tower, 224 px images with 16 px
  patches (197 vision tokens, as ViT-B/16), projection 256.
* ``vit-b16``: ViT-B/16's shapes (text 512 wide, 12 layers; vision 768 wide, 12 layers; projection 512), random
  weights; meant for a GPU (``benchmarks/gpu.sh``).

The tokenizer is ``peft_dor.testing``'s CLIP BPE tokenizer with the benchmark's words as single tokens, so class
names are two-word names of two tokens each (ImageNet's names are 1-4 tokens with CLIP's real vocabulary).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from peft_dor.testing import VIT_B16_SIZE

RESULTS_DIR = Path(__file__).resolve().parent / "results"

SIZES: dict[str, dict[str, Any]] = {
    "mid": {
        "text_config": {
            "hidden_size": 256,
            "intermediate_size": 1024,
            "num_hidden_layers": 6,
            "num_attention_heads": 4,
        },
        "vision_config": {
            "hidden_size": 256,
            "intermediate_size": 1024,
            "num_hidden_layers": 6,
            "num_attention_heads": 4,
            "image_size": 224,
            "patch_size": 16,
        },
        "projection_dim": 256,
    },
    "vit-b16": VIT_B16_SIZE,
}

ADJECTIVES = [
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "brown",
    "grey",
    "orange",
    "purple",
    "pink",
    "golden",
    "silver",
    "small",
    "large",
    "tiny",
    "giant",
    "wild",
    "spotted",
    "striped",
    "long",
    "short",
    "old",
    "young",
    "dark",
    "bright",
    "common",
    "northern",
    "southern",
    "eastern",
    "western",
]
NOUNS = [
    "cat",
    "dog",
    "bird",
    "fish",
    "horse",
    "frog",
    "deer",
    "ship",
    "truck",
    "car",
    "plane",
    "boat",
    "tree",
    "rose",
    "tulip",
    "apple",
    "banana",
    "pizza",
    "lamp",
    "cup",
    "book",
    "phone",
    "clock",
    "bottle",
    "shoe",
    "hat",
    "shirt",
    "ball",
    "kite",
    "chair",
    "table",
    "house",
    "bridge",
    "tower",
    "train",
    "bus",
    "bike",
    "goat",
    "sheep",
    "cow",
    "pig",
    "duck",
    "goose",
    "owl",
    "eagle",
    "hawk",
    "crow",
    "snake",
    "lizard",
    "turtle",
    "whale",
    "shark",
    "crab",
    "bee",
    "ant",
    "moth",
    "beetle",
    "spider",
    "fox",
    "wolf",
    "bear",
    "lion",
    "tiger",
    "zebra",
    "monkey",
    "mouse",
    "rabbit",
    "squirrel",
    "bat",
    "camel",
    "llama",
    "panda",
    "koala",
    "otter",
    "seal",
    "penguin",
    "parrot",
    "swan",
]
BENCH_WORDS = tuple(ADJECTIVES + NOUNS)


def two_word_names(start: int, count: int) -> list[str]:
    """``count`` distinct ``"<adjective> <noun>"`` names, from the ``start``-th one on (deterministic)."""
    total = len(ADJECTIVES) * len(NOUNS)
    if start + count > total:
        raise ValueError(f"Only {total} two-word names exist; asked for {start}..{start + count}.")
    return [f"{ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[i // len(ADJECTIVES)]}" for i in range(start, start + count)]


def class_names(n: int) -> list[str]:
    """The benchmark's ``n`` class names."""
    return two_word_names(0, n)


def outlier_names(n: int) -> list[str]:
    """``n`` outlier names disjoint from every class list (taken from the end of the name space)."""
    total = len(ADJECTIVES) * len(NOUNS)
    return two_word_names(total - n, n)


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one lower-case word: merge the lowest-ranked adjacent pair until none applies."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [
            (ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False)) if (a, b) in ranks
        ]
        if not pairs:
            break
        rank = min(pairs)[0]
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and ranks.get((parts[i], parts[i + 1])) == rank:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def bench_tokenizer(words: Sequence[str]):
    """A real ``CLIPTokenizer`` whose vocabulary makes every word of ``words`` a single token.

    Merges are appended word by word after replaying the merges so far, so a word's own merges always apply (BPE
    takes the lowest-ranked pair first).
    """
    from transformers import CLIPTokenizer

    from peft_dor.testing import _bytes_to_unicode

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(token, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        parts = _bpe(word, ranks)
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            ranks.setdefault(pair, len(ranks))
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = [pair[0] + pair[1], *parts[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=sorted(ranks, key=ranks.get))


def cache_root() -> Path:
    return Path(os.environ.get("PEFT_DOR_CACHE", Path.home() / ".cache" / "peft_dor"))


def build_bench_clip(size: str = "mid", seed: int = 0) -> str:
    """Write (once) a random CLIP of the given size with the benchmark tokenizer; return its directory."""

    from peft_dor.testing import TINY_WORDS, save_random_clip, tiny_clip_config

    path = cache_root() / f"bench-clip-{size}-{seed}"
    if (path / "config.json").exists():
        return str(path)
    tokenizer = bench_tokenizer(tuple(TINY_WORDS) + BENCH_WORDS)
    shape = SIZES[size]
    config = tiny_clip_config(
        len(tokenizer),
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        text_config=dict(shape["text_config"]),
        vision_config=dict(shape["vision_config"]),
        projection_dim=shape["projection_dim"],
    )
    return save_random_clip(config, tokenizer, path, seed)


def load_clip(path: str, device: str = "cpu"):
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(path, attn_implementation="sdpa").to(device).eval()


def coop_model(path: str, names: Sequence[str], device: str = "cpu", n_ctx: int = 4, ctx_init: str | None = None):
    """A CoOp ``PeftModel`` on a fresh copy of the benchmark CLIP."""
    from peft import get_peft_model

    import peft_dor

    kwargs = {"ctx_init": ctx_init} if ctx_init else {}
    return get_peft_model(load_clip(path, device), peft_dor.CoOpConfig(class_names=list(names), n_ctx=n_ctx, **kwargs))


def pixels(n: int, size: str = "mid", seed: int = 0, device: str = "cpu") -> torch.Tensor:
    image = SIZES[size]["vision_config"]["image_size"]
    return torch.randn(n, 3, image, image, generator=torch.Generator().manual_seed(seed)).to(device)


# ---------------------------------------------------------------------------------------------------- timing
def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def compare(
    fns: dict[str, Callable[[], Any]], warmup: int = 1, repeats: int = 5, device: str = "cpu"
) -> dict[str, dict[str, Any]]:
    """Time each function ``repeats`` times after ``warmup`` calls, interleaved round by round.

    Returns ``{name: {"median_s", "min_s", "times_s"}}``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(t), "min_s": min(t), "times_s": [round(x, 6) for x in t]}
        for name, t in times.items()
    }


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


@contextlib.contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    """bf16/fp16 autocast for ``dtype`` != float32 (prompts stay float32 parameters either way)."""
    if dtype == "float32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype)):
        yield


# ---------------------------------------------------------------------------------------------------- CLI + results
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", choices=sorted(SIZES), default=os.environ.get("PEFT_DOR_BENCH_SIZE", "mid"))
    p.add_argument("--device", default=os.environ.get("PEFT_DOR_BENCH_DEVICE", "cpu"))
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=os.environ.get("PEFT_DOR_BENCH_DTYPE", "float32"),
        help="autocast dtype of the timed runs; equality checks always run in float32",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per implementation (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("PEFT_DOR_BENCH_THREADS", "1")),
        help="torch intra-op threads; default 1 (on a shared 2-core machine, OpenMP barriers stall badly when other "
        "jobs take a core); 0 keeps torch's default",
    )
    p.add_argument("--results-dir", default=os.environ.get("PEFT_DOR_BENCH_RESULTS", str(RESULTS_DIR)))
    p.add_argument("--tag", default="", help="suffix of the results file names (e.g. '-gpu')")
    return p


def step_args(description: str, classes: int = 50, batch_size: int = 32) -> argparse.Namespace:
    """Parse the common options plus ``--classes`` and ``--batch-size``, and set the process up."""
    p = parser(description.splitlines()[0])
    p.add_argument("--classes", type=int, default=classes)
    p.add_argument("--batch-size", type=int, default=batch_size)
    args = p.parse_args()
    setup(args)
    return args


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def environment(args: argparse.Namespace | None = None) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:  # pragma: no cover
        commit = ""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    if args is not None:
        env.update(size=args.size, device=args.device, dtype=args.dtype, repeats=args.repeats, warmup=args.warmup)
        env["model_shape"] = SIZES[args.size]
    return env


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [c for c in row if c not in columns]

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


NOISE_NOTE = (
    "Times are medians of interleaved rounds measured in one process; the machine may be shared with other jobs, so "
    "absolute times are noisy and the ratios (same process, same inputs) are the result."
)


def write_results(
    name: str,
    args: argparse.Namespace,
    question: str,
    rows: Sequence[dict[str, Any]],
    data: dict[str, Any],
    notes: Sequence[str] = (),
) -> Path:
    """Write ``<results-dir>/<name><tag>.json`` (everything) and ``.md`` (the question, the table, the notes)."""
    out_dir = Path(args.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}{args.tag}"
    payload = {"benchmark": name, "question": question, "rows": list(rows), "data": data, "notes": list(notes)}
    payload["environment"] = environment(args)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    env = payload["environment"]
    md = [
        f"# {name}",
        "",
        f"**Question.** {question}",
        "",
        markdown_table(rows),
        "",
        *[f"- {note}" for note in [*notes, NOISE_NOTE]],
        "",
        f"Run: size `{env['size']}`, device `{env['device']}`, dtype `{env['dtype']}`, torch {env['torch']} with "
        f"{env['torch_threads']} threads on {env['cpu']} ({env['cpu_count']} CPUs), {env['date']}, commit "
        f"`{env['git_commit']}`. Reproduce: `python benchmarks/{name}.py --size {env['size']}`.",
        "",
    ]
    (out_dir / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))
    return out_dir / f"{stem}.json"


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``: the resident set and its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_growth(run, device: str) -> tuple[int, int]:
    """``(base_bytes, peak_bytes)`` around ``run()``: CUDA's allocated and peak allocated bytes, or on CPU the
    resident set after set-up and its peak during ``run`` (VmHWM, reset first through ``/proc/self/clear_refs``).
    Call it in a fresh process per setting: the CPU peak counts what the allocator keeps, not only live tensors."""
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = status_kb("VmRSS") * 1024
    run()
    if cuda:
        torch.cuda.synchronize()
        return base, torch.cuda.max_memory_allocated()
    return base, status_kb("VmHWM") * 1024


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def check_equal(name: str, a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> float:
    """Assert two results agree within ``atol`` (float32 runs) and return the max abs difference."""
    diff = max_abs_diff(a, b)
    if diff > atol:
        raise AssertionError(f"{name}: the fast and plain results differ by {diff:.3g} > {atol}")
    return diff


# ---------------------------------------------------------------------------------------------------- the plain way
class NaiveCoOp:
    """CoOp (+DOR) as the research code does it, written plainly against transformers' CLIP modules.

    * every prompt is padded to the tower's 77 positions (``padding="max_length"``);
    * the class prompts are tokenised and encoded on every call (training *and* evaluation);
    * images go through the vision tower on every call;
    * DOR's zero-shot outlier targets are tokenised and encoded by frozen CLIP on every step.

    It shares the context tensor's *values* with the peft-dor model under test (its own copy), so both compute the
    same loss; the benchmarks check that they do.

    Args:
        clip: a ``CLIPModel`` (frozen).
        tokenizer: its tokenizer.
        ctx: ``(n_ctx, width)`` initial context vectors.
    """

    def __init__(self, clip, tokenizer, ctx: torch.Tensor):
        self.clip = clip
        self.tokenizer = tokenizer
        self.ctx = torch.nn.Parameter(ctx.detach().clone().float())
        self.n_ctx = ctx.shape[0]
        self.length = clip.config.text_config.max_position_embeddings
        self.eos_id = tokenizer.eos_token_id

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer(
            list(texts), padding="max_length", max_length=self.length, truncation=True, return_tensors="pt"
        )["input_ids"].to(self.clip.device)
        eos = (ids == self.eos_id).int().argmax(dim=-1)  # the first EOS (padding uses the same token)
        return ids, eos

    def prompted_text(self, names: Sequence[str]) -> torch.Tensor:
        """L2-normalised features of ``"X X X X {name}."`` with the context in slots 1..n (gradients reach ctx)."""
        text = self.clip.text_model
        ids, eos = self.tokenize([" ".join(["X"] * self.n_ctx) + f" {name}." for name in names])
        tokens = text.embeddings.token_embedding(ids)
        tokens = torch.cat(
            [tokens[:, :1], self.ctx.to(tokens.dtype).expand(len(names), -1, -1), tokens[:, 1 + self.n_ctx :]], 1
        )
        hidden = text.embeddings(inputs_embeds=tokens)
        length = hidden.shape[1]
        mask = torch.full((length, length), torch.finfo(hidden.dtype).min, dtype=hidden.dtype, device=hidden.device)
        mask = torch.triu(mask, diagonal=1)[None, None]
        for layer in text.encoder.layers:
            hidden = layer(hidden, mask)
        hidden = text.final_layer_norm(hidden)
        pooled = hidden[torch.arange(len(names), device=hidden.device), eos]
        return torch.nn.functional.normalize(self.clip.text_projection(pooled), dim=-1)

    @torch.no_grad()
    def zero_shot_text(self, names: Sequence[str], template: str = "a photo of a {}.") -> torch.Tensor:
        """Frozen CLIP's features of ``template.format(name)`` through transformers' own text path."""
        ids, _ = self.tokenize([template.format(name) for name in names])
        features = self.clip.get_text_features(input_ids=ids).pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)

    def logits(self, pixel_values: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        image = self.image(pixel_values)
        text = self.prompted_text(class_names)
        return self.clip.logit_scale.exp() * image @ text.to(image.dtype).t()

    def loss(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        class_names: Sequence[str],
        outliers: Sequence[str] = (),
        weight: float = 8.0,
        template: str = "a photo of a {}.",
    ) -> torch.Tensor:
        """CE, plus ``weight * (1 - mean cos)`` between prompted and zero-shot outlier features when given."""
        image = self.image(pixel_values)
        text = self.prompted_text(list(class_names) + list(outliers))
        n = len(class_names)
        logits = self.clip.logit_scale.exp() * image @ text[:n].to(image.dtype).t()
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        if outliers:
            targets = self.zero_shot_text(outliers, template)
            cos = torch.nn.functional.cosine_similarity(text[n:].float(), targets, dim=-1, eps=1e-7)
            loss = loss + weight * (1.0 - cos.mean())
        return loss


def build_dor(model, n_outliers: int, vocabulary_size: int = 600, pool_size: int = 300, weight: float = 8.0):
    """A built ``DORRegularizer`` for ``model``: pool from a two-word vocabulary disjoint from the classes."""
    from peft_dor.dor.regularizer import DORConfig, DORRegularizer

    config = DORConfig(
        weight=weight,
        vocabulary=outlier_names(vocabulary_size),
        pool_size=pool_size,
        num_outliers=n_outliers,
        seed=0,
        cache_features=False,
    )
    dor = DORRegularizer(config)
    dor.build_pool(model, progress=False)
    return dor


@dataclasses.dataclass
class CoOpRun:
    """What a training-step benchmark needs: the benchmark CLIP's path, a CoOp model in training mode, a batch."""

    path: str
    names: list[str]
    model: Any
    wrapper: Any
    ctx: torch.nn.Parameter
    images: torch.Tensor
    embeds: torch.Tensor
    labels: torch.Tensor


def coop_run(args: argparse.Namespace, n_classes: int, batch_size: int, n_ctx: int = 4) -> CoOpRun:
    """Build the benchmark CLIP (once), a CoOp model over ``n_classes`` names and one batch (pixels and features)."""
    path = build_bench_clip(args.size)
    names = class_names(n_classes)
    model = coop_model(path, names, args.device, n_ctx=n_ctx)
    model.train()
    wrapper = model.get_base_model()
    ctx = wrapper.clip.text_model.embeddings.coop_ctx["default"]
    images = pixels(batch_size, args.size, device=args.device)
    with torch.no_grad():
        embeds = wrapper.clip.get_image_features(pixel_values=images).pooler_output
    labels = torch.arange(batch_size, device=args.device) % n_classes
    return CoOpRun(path, names, model, wrapper, ctx, images, embeds, labels)
