"""One base-to-new experiment in the world: the split, the images, one prompt-tuning run and its evaluation.

Shared by the demo (:mod:`peft_dor.world.demo`) and the protocol miniature (``benchmarks/world_protocol.py``). Every
run goes through the library's public path: ``get_peft_model`` with a method config, :class:`~peft_dor.DORTrainer`
with a :class:`~peft_dor.DORConfig` (so the pool is selected by ``select_pool`` and drawn by the sampler), and
``set_class_names`` for the new classes.

The split rule (fixed before any run, see ``docs/world.md``): the nouns of one colour (the world's first, red) in
alphabetical order, the first half base and the second half new, as the protocol splits a dataset's sorted labels. DOR's
vocabulary is every other noun of the world. Test images are the same for every seed; a seed draws the shots, the
prompt initialisation and the outliers.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .pretrain import logits_of, pixel_values, text_inputs
from .world import COLOURS, NOUN_TEMPLATES, World, render_batch

TEMPLATE = NOUN_TEMPLATES[0]
# Tags of the random streams: shots (with the seed), validation shots (with the seed) and the fixed test images.
_SHOT_TAG, _VAL_TAG, _TEST_TAG = 101, 102, 103

#: per method: its config class name in ``peft_dor`` and the overrides this 2-layer world CLIP needs
METHODS: dict[str, tuple[str, dict]] = {
    "coop": ("CoOpConfig", {"n_ctx": 16}),
    "kgcoop": ("KgCoOpConfig", {}),
    "maple": ("MaPLeConfig", {"depth": 2}),  # prompts at the input and the one layer above (the tower has 2)
    "tcp": ("TCPConfig", {"class_token_layer": 1}),  # class-aware tokens enter the second of 2 layers
}


@dataclass
class ExperimentConfig:
    """Hyper-parameters of a world base-to-new run (all recorded in the demo's ``results.json``).

    The defaults follow the settings at which prompt tuning fits these base classes (the issue's prototype): CoOp
    with 16 randomly initialised context tokens, SGD at lr 0.05 with cosine decay and no warm-up epoch (the
    protocol's first epoch at 1e-5 is a large part of a short run), 16 shots. λ is the method's default (8 for CoOp,
    2 otherwise); the pool holds ``pool_size`` of the ``vocabulary`` nouns. ``threads``: torch threads during a run
    (restored afterwards); the world CLIP is so small that one thread is fastest, and on a loaded 2-core machine two
    threads measured 8x slower than one. ``None`` keeps torch's setting.
    """

    colour: str = "red"
    shots: int = 16
    val_shots: int = 4
    test_per_class: int = 50
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 0.05
    dor_weight: float | None = None
    pool_size: int = 20
    selection: str = "near"
    n_bins: int = 10
    threads: int | None = 1
    method_overrides: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"`colour` must be one of {list(COLOURS)}; got {self.colour!r}.")
        for name in ("shots", "val_shots", "test_per_class", "epochs", "batch_size", "pool_size", "n_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive; got {self.learning_rate!r}.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Split:
    """Base and new nouns and DOR's vocabulary (the world's other nouns)."""

    base: list[str]
    new: list[str]
    vocabulary: list[str]


def world_split(world: World, colour: str = "red") -> Split:
    """The nouns of ``colour`` sorted alphabetically: first ``ceil(n/2)`` base, the rest new; the others: vocabulary."""
    nouns = sorted(world.nouns_with(colour=colour))
    m = math.ceil(len(nouns) / 2)
    base, new = nouns[:m], nouns[m:]
    chosen = set(nouns)
    return Split(base=base, new=new, vocabulary=[n for n in world.nouns if n not in chosen])


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(p) for p in parts]))


def render_images(world: World, nouns: Sequence[str], per_class: int, rng: np.random.Generator):
    """``per_class`` images of each noun (sizes alternating big/small): ``(pixel_values, labels)``."""
    names = [n for n in nouns for _ in range(per_class)]
    sizes = ["big" if i % 2 == 0 else "small" for i in range(len(names))]
    labels = torch.tensor([i for i in range(len(nouns)) for _ in range(per_class)])
    return pixel_values(render_batch(world, names, sizes, rng)), labels


@dataclass
class ImageSet:
    """Preprocessed images, their labels and (filled in lazily) the frozen CLIP's projected image features."""

    pixels: torch.Tensor
    labels: torch.Tensor
    embeds: torch.Tensor | None = None

    def features(self, clip) -> torch.Tensor:
        if self.embeds is None:
            with torch.no_grad():
                self.embeds = torch.cat(
                    [clip.get_image_features(pixel_values=c).pooler_output for c in self.pixels.split(256)]
                )
        return self.embeds


@dataclass
class TaskData:
    """The test images (the same for every seed) of one split."""

    split: Split
    base_test: ImageSet
    new_test: ImageSet


def test_data(world: World, config: ExperimentConfig) -> TaskData:
    split = world_split(world, config.colour)
    base = render_images(world, split.base, config.test_per_class, _rng(_TEST_TAG, 0))
    new = render_images(world, split.new, config.test_per_class, _rng(_TEST_TAG, 1))
    return TaskData(split, ImageSet(*base), ImageSet(*new))


def shots(world: World, split: Split, config: ExperimentConfig, seed: int) -> tuple[ImageSet, ImageSet]:
    """The seed's training shots and base validation shots."""
    train = render_images(world, split.base, config.shots, _rng(_SHOT_TAG, seed))
    val = render_images(world, split.base, config.val_shots, _rng(_VAL_TAG, seed))
    return ImageSet(*train), ImageSet(*val)


class _Rows(torch.utils.data.Dataset):
    """Rows of ``{"image_embeds" or "pixel_values": ..., "labels": ...}`` for the Trainer's default collator."""

    def __init__(self, key: str, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.key, self.inputs, self.labels = key, inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {self.key: self.inputs[i], "labels": self.labels[i]}


def method_config(method: str, class_names: Sequence[str], overrides: dict | None = None):
    """The method's PEFT config for the world CLIP (the sizes of :data:`METHODS`, then ``overrides``)."""
    import peft_dor

    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; the world demo runs {sorted(METHODS)}.")
    class_name, defaults = METHODS[method]
    kwargs = {**defaults, **(overrides or {}), "class_names": list(class_names), "template": TEMPLATE}
    return getattr(peft_dor, class_name)(**kwargs)


def _inputs(model, clip, images: ImageSet) -> tuple[str, torch.Tensor]:
    """Cached image features where the method leaves the vision tower frozen, else the pixels."""
    from ..dor import unwrap_prompt_model

    tuner = unwrap_prompt_model(model).method
    if getattr(tuner, "image_features_cacheable", False):
        return "image_embeds", images.features(clip)
    return "pixel_values", images.pixels


@torch.no_grad()
def predict(model, clip, images: ImageSet) -> torch.Tensor:
    """Logits of ``images`` among the model's current class names (eval mode)."""
    model.eval()
    key, inputs = _inputs(model, clip, images)
    return torch.cat([model(**{key: chunk}).logits.float() for chunk in inputs.split(256)])


@torch.no_grad()
def zero_shot_logits(clip, tokenizer, names: Sequence[str], images: ImageSet) -> torch.Tensor:
    """Frozen model's logits (its own logit scale and, on SigLIP, bias) of ``images`` among ``TEMPLATE`` prompts of
    ``names``, the text tokenised as the backbone runs it."""
    text = text_inputs(clip, tokenizer, [TEMPLATE.format(n) for n in names])
    text_features = F.normalize(clip.get_text_features(**text).pooler_output, dim=-1)
    image_features = F.normalize(images.features(clip), dim=-1)
    return logits_of(clip, image_features, text_features)


@torch.no_grad()
def text_drift(model, names: Sequence[str]) -> list[float]:
    """Per name: cosine between its text feature under the learned prompts and its zero-shot feature."""
    from ..dor import unwrap_prompt_model

    wrapper = unwrap_prompt_model(model)
    model.eval()
    prompted = F.normalize(wrapper.encode_text(list(names)).float(), dim=-1)
    zero_shot = F.normalize(wrapper.zero_shot_text_features(list(names), TEMPLATE).float(), dim=-1)
    return (prompted * zero_shot).sum(-1).tolist()


@dataclass
class RunResult:
    """Logits and drift of one trained run (``base_val`` feeds post-hoc temperature scaling)."""

    base_logits: torch.Tensor
    new_logits: torch.Tensor
    base_val_logits: torch.Tensor
    base_val_labels: torch.Tensor
    new_cos_to_zero_shot: list[float]
    pool: list[str] | None


def train_and_evaluate(
    clip_path: str,
    world: World,
    task: TaskData,
    method: str,
    seed: int,
    config: ExperimentConfig,
    dor: dict | None = None,
) -> RunResult:
    """Tune ``method``'s prompts on the seed's base shots (with DOR when ``dor`` is given) and evaluate base and new.

    Args:
        dor: ``None`` for no DOR, else overrides of the demo's DORConfig (e.g. ``{"selection": "far"}`` or
            ``{"vocabulary": new_nouns}`` for the oracle ablation).
    """
    with torch_threads(config.threads):
        return _train_and_evaluate(clip_path, world, task, method, seed, config, dor)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` torch threads (``None``: unchanged), then restore the previous number."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_and_evaluate(clip_path, world, task, method, seed, config, dor) -> RunResult:
    from peft import get_peft_model
    from transformers import AutoModel, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from .. import DORConfig, DORTrainer

    split = task.split
    train, val = shots(world, split, config, seed)
    clip = AutoModel.from_pretrained(clip_path).eval()  # CLIPModel or SiglipModel, as config.json names
    torch.manual_seed(seed)  # the prompt initialisation
    model = get_peft_model(clip, method_config(method, split.base, config.method_overrides.get(method)))
    dor_config = None
    if dor is not None:
        options = {
            "weight": config.dor_weight,
            "pool_size": config.pool_size,
            "selection": config.selection,
            "vocabulary": list(split.vocabulary),
            "cache_features": False,
            "seed": seed,
            **dor,
        }
        options["pool_size"] = min(options["pool_size"], len(options["vocabulary"]))
        dor_config = DORConfig(**options)
    key, inputs = _inputs(model, clip, train)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=config.batch_size,
            num_train_epochs=config.epochs,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            weight_decay=0.0,  # the protocol's 5e-4 comes with optimizer_name="sgd"
            max_grad_norm=0.0,  # the protocol does not clip gradients
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=seed,
            data_seed=seed,
            use_cpu=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        trainer = DORTrainer(
            model=model,
            args=args,
            train_dataset=_Rows(key, inputs, train.labels),
            dor=dor_config,
            compute_metrics=None,
            optimizer_name="sgd",
        )
        trainer.remove_callback(PrinterCallback)  # the demo prints its own one line per run, not Trainer's log dicts
        trainer.train()
    pool = list(trainer.dor.pool.names) if trainer.dor is not None else None
    base_logits = predict(model, clip, task.base_test)
    base_val_logits = predict(model, clip, val)
    model.set_class_names(split.new)
    new_logits = predict(model, clip, task.new_test)
    drift = text_drift(model, split.new)
    return RunResult(base_logits, new_logits, base_val_logits, val.labels, drift, pool)


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> dict[str, float]:
    """Accuracy and ECE (fractions) with ``n_bins`` equal-width bins."""
    from ..metrics import accuracy, expected_calibration_error

    return {
        "accuracy": float(accuracy(logits, labels, from_logits=True)),
        "ece": float(expected_calibration_error(logits, labels, n_bins=n_bins, from_logits=True)),
    }


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def summarise(runs: Sequence[dict], methods: Sequence[str]) -> dict:
    """``summary[method][split][metric]`` over seeds: mean and ``*_sd`` (sample sd; 0 for one seed).

    ``hm.accuracy`` is the harmonic mean of the mean base and new accuracies (the protocol's HM); ``hm.ece`` is the
    arithmetic mean of base and new ECE, as in the DOR paper's tables. ``hm.*_sd`` is over the per-seed values.
    """
    summary = {}
    for method in methods:
        rows = [r for r in runs if r["method"] == method]
        out = {}
        for split in ("base", "new"):
            out[split] = {}
            for metric in ("accuracy", "ece"):
                values = np.array([r[split][metric] for r in rows])
                out[split][metric] = float(values.mean())
                out[split][f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        hm_acc = np.array([harmonic_mean(r["base"]["accuracy"], r["new"]["accuracy"]) for r in rows])
        hm_ece = np.array([(r["base"]["ece"] + r["new"]["ece"]) / 2 for r in rows])
        out["hm"] = {
            "accuracy": harmonic_mean(out["base"]["accuracy"], out["new"]["accuracy"]),
            "accuracy_sd": float(hm_acc.std(ddof=1)) if len(rows) > 1 else 0.0,
            "ece": (out["base"]["ece"] + out["new"]["ece"]) / 2,
            "ece_sd": float(hm_ece.std(ddof=1)) if len(rows) > 1 else 0.0,
        }
        summary[method] = out
    return summary


def format_table(summary: dict, title: str = "") -> str:
    """The paper's layout: accuracy base / new / HM, then ECE base / new / "HM" (mean), in %, mean ± sd."""

    def cell(split: dict, metric: str) -> str:
        return f"{100 * split[metric]:5.1f} ± {100 * split[metric + '_sd']:4.1f}"

    header = f"{'method':<18} | {'acc base':>12} {'acc new':>12} {'acc HM':>12} | {'ECE base':>12} {'ECE new':>12}"
    header += f" {'ECE HM':>12}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for method, row in summary.items():
        accs = " ".join(cell(row[s], "accuracy") for s in ("base", "new", "hm"))
        eces = " ".join(cell(row[s], "ece") for s in ("base", "new", "hm"))
        lines.append(f"{method:<18} | {accs} | {eces}")
    return "\n".join(lines)
