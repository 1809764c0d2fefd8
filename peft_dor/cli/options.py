"""The option groups of ``peft-dor train`` (model, data, DOR, run) and :class:`TrainCommand`, what a parsed command
holds. Each field's ``help`` is its ``--help`` line; :mod:`peft_dor.cli.arguments` parses them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import METHODS

#: the YAML configs shipped with the package, one per method (``--config coop`` names ``coop.yaml``)
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TASKS = ("base_to_new", "few_shot", "domain_generalization")
METHOD_NAMES = tuple(key.lower() for key in METHODS)
#: the methods that declare their own templates (``MethodSpec.templates``): the choices of --template_variant
TEMPLATE_METHODS = tuple(spec.name for spec in METHODS.values() if spec.templates is not None)


def _per_method_default(attribute: str) -> str:
    """The registered methods' defaults of one :class:`~peft_dor.registry.MethodSpec` field, for a ``--help`` line.

    Built from the registry so that a new method's default shows up without editing the CLI, e.g.
    ``"8 for CoOp, 2 for the others"``: the most common value is "the others".
    """
    by_value: dict[str, list[str]] = {}
    for spec in METHODS.values():
        value = getattr(spec, attribute)
        by_value.setdefault(f"{value:g}" if isinstance(value, float) else str(value), []).append(spec.display_name)
    if len(by_value) == 1:
        return f"{next(iter(by_value))} for every method"
    common = max(by_value, key=lambda value: len(by_value[value]))
    rare = [f"{value} for {', '.join(names)}" for value, names in by_value.items() if value != common]
    return ", ".join([*rare, f"{common} for the others"])


@dataclass
class ModelArguments:
    _argument_group_name = "model"

    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch16",
        metadata={"help": "CLIP checkpoint (Hub id or local folder) with its tokenizer and image processor."},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of the checkpoint."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are cached."})


@dataclass
class DataArguments:
    _argument_group_name = "data"

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Benchmark name (dtd, eurosat, imagenet, ...; see docs/data.md) or any name for other data. "
            "Selects the template and class-name clean-ups."
        },
    )
    data_root: str | None = field(
        default=None,
        metadata={
            "help": "Root of the benchmark folder layout (<data_root>/dtd/images + split_zhou_*.json; docs/data.md)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A local image folder with train/ and test/ sub-folders, one folder per class."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset id (loaded with datasets)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first Image one)."})
    label_column: str | None = field(
        default=None, metadata={"help": "Label column (default: the first ClassLabel one)."}
    )
    test_split: str | None = field(
        default=None, metadata={"help": "Split to test on (default: 'test' if labelled, else 'validation')."}
    )
    task: str = field(
        default="base_to_new",
        metadata={
            "help": "base_to_new (train on base, test on base and new), few_shot (all classes) or "
            "domain_generalization (train on --dataset, test on --dg_targets).",
            "choices": TASKS,
        },
    )
    shots: int = field(default=16, metadata={"help": "Training images per class (0: all)."})
    template: str | None = field(
        default=None, metadata={"help": "Hand-crafted template with one '{}'; default: the dataset's (docs/data.md)."}
    )
    template_variant: str | None = field(
        default=None,
        metadata={
            "help": "Use this method's hand-crafted templates instead of the canonical ones (docs/data.md).",
            "choices": TEMPLATE_METHODS,
        },
    )
    dg_targets: list[str] = field(
        default_factory=lambda: ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"],
        metadata={"help": "Domain-generalisation targets in the benchmark layout under --data_root."},
    )
    augment: bool = field(
        default=True, metadata={"help": "Training augmentation: random resized crop (bicubic) and flip."}
    )
    verify_images: bool | None = field(
        default=None,
        metadata={"help": "Decode every image before training (default: on below 5000 images)."},
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Test on at most this many images (debug)."})


@dataclass
class DORArguments:
    _argument_group_name = "DOR (Dynamic Outlier Regularization)"

    dor: bool = field(default=True, metadata={"help": "Train with DOR (--no_dor: off)."})
    dor_weight: float | None = field(
        default=None, metadata={"help": f"λ; default: the method's ({_per_method_default('default_dor_weight')})."}
    )
    dor_pool_size: int | None = field(
        default=None,
        metadata={
            "help": "Outlier pool size K (near-OOD top-K); default: every vocabulary term up to 5000 (the paper's K). "
            "A K larger than the vocabulary is refused."
        },
    )
    dor_num_outliers: int | None = field(
        default=None, metadata={"help": "Outliers per step; default: the number of training classes."}
    )
    dor_selection: str = field(
        default="near", metadata={"help": "Pool selection.", "choices": ("near", "far", "random")}
    )
    dor_resample: str = field(
        default="step", metadata={"help": "New outliers every step or every epoch.", "choices": ("step", "epoch")}
    )
    dor_sampling: str = field(
        default="uniform",
        metadata={"help": "How outliers are drawn from the pool.", "choices": ("uniform", "similarity", "cycle")},
    )
    dor_template: str = field(default="a photo of a {}.", metadata={"help": "Template of the zero-shot targets."})
    dor_vocabulary: str = field(
        default="wordnet",
        metadata={"help": "'wordnet', a text file with one term per line, or comma-separated terms."},
    )
    dor_side: str | None = field(
        default=None,
        metadata={
            "help": "text (outlier words) or image (outlier images); default: the method's "
            f"({_per_method_default('dor_side')}).",
            "choices": ("text", "image"),
        },
    )
    dor_outlier_images: str | None = field(
        default=None, metadata={"help": "dor_side=image: an image folder or Hub dataset id with outlier images."}
    )


@dataclass
class RunArguments:
    _argument_group_name = "run"

    method: str = field(default="coop", metadata={"help": "Prompt method.", "choices": METHOD_NAMES})
    config: str | None = field(
        default=None,
        metadata={
            "help": "YAML file of flags, or a shipped config by method name (default: the method's own, "
            f"one of {', '.join(METHOD_NAMES)})."
        },
    )
    method_config: str | None = field(
        default=None, metadata={"help": "JSON object of method-config fields not exposed as flags."}
    )
    demo: bool = field(
        default=False,
        metadata={
            "help": "The paper in miniature, offline: zero-shot and --method with and without DOR on the shipped world CLIP, "
            "3 seeds, a few minutes on CPU (docs/world.md)."
        },
    )
    methods: list[str] | None = field(
        default=None,
        metadata={"help": "--demo only: more methods to run with and without DOR (--method's choices)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Retrain into an output directory that already holds a run."}
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Protocol batch size over all processes; sets per_device_train_batch_size accordingly."},
    )
    optimizer: str = field(
        default="sgd",
        metadata={"help": "Protocol optimiser; 'hf' uses --optim instead.", "choices": ("sgd", "adam", "hf")},
    )
    scheduler: str = field(
        default="protocol",
        metadata={
            "help": "'protocol' (warm-up + per-epoch cosine) or 'hf' (--lr_scheduler_type).",
            "choices": ("protocol", "hf"),
        },
    )
    ece_bins: int = field(default=10, metadata={"help": "Bins of ECE/MCE/ACE."})
    ece_edge_rule: str = field(
        default="standard",
        metadata={
            "help": "Bin edges; 'lab' matches the DOR lab's code (docs/metrics.md).",
            "choices": ("standard", "lab"),
        },
    )
    mce_variant: str = field(
        default="standard",
        metadata={"help": "'weighted' is the DOR lab's MCE (docs/metrics.md).", "choices": ("standard", "weighted")},
    )


@dataclass
class TrainCommand:
    """Everything ``peft-dor train`` was asked to do, parsed and checked."""

    model: ModelArguments
    data: DataArguments
    dor: DORArguments
    run: RunArguments
    training: Any  # transformers.TrainingArguments
    method_options: Any  # the method config's flags, a dataclass instance
    method_training: Any  # the method's own training options (its spec's ``options``), or None
    config_cls: type
    argv: list[str]
    explicit_flags: set[str]

    @property
    def method_key(self) -> str:
        return self.run.method.upper()

    def settings(self) -> dict[str, Any]:
        """Every effective setting, grouped, JSON-ready (written into results.json and checked on resume)."""
        groups = {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "dor": dataclasses.asdict(self.dor),
            "run": dataclasses.asdict(self.run),
            "method": dataclasses.asdict(self.method_options),
            "method_training": dataclasses.asdict(self.method_training) if self.method_training else {},
            "training": {k: v for k, v in self.training.to_dict().items() if not k.startswith("_")},
        }
        return json.loads(json.dumps(groups, default=str))
