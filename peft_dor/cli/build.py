"""The pieces ``peft-dor train`` builds from its arguments: the method's PEFT config, the model, DOR's config (with
its outlier images) and the record of the DOR vocabulary a run used."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from .arguments import parse_method_config
from .errors import UsageError, usage_errors

if TYPE_CHECKING:
    from .options import TrainCommand


def dor_config(dor_args, demo_vocabulary: list[str] | None, processor):
    """The ``DORConfig`` of the run, or None without DOR."""
    if not dor_args.dor:
        return None
    from ..dor import DORConfig

    vocabulary: Any = dor_args.dor_vocabulary
    if demo_vocabulary is not None:
        vocabulary = demo_vocabulary
    elif "," in vocabulary and not os.path.exists(vocabulary):
        vocabulary = [t.strip() for t in vocabulary.split(",") if t.strip()]
    elif vocabulary != "wordnet" and not os.path.isfile(os.path.expanduser(vocabulary)):
        raise UsageError(
            f"--dor_vocabulary {vocabulary}: no such file; give 'wordnet', a text file with one term per line, or "
            "comma-separated terms."
        )
    if isinstance(vocabulary, list) and (dor_args.dor_pool_size or 0) > len(vocabulary):
        raise UsageError(
            f"--dor_pool_size {dor_args.dor_pool_size}: the vocabulary has only {len(vocabulary)} terms; give at most "
            "that many, or leave --dor_pool_size unset to use all of them."
        )
    if dor_args.dor_side == "image" and not dor_args.dor_outlier_images:
        raise UsageError("--dor_side image needs --dor_outlier_images (an image folder or Hub dataset id).")
    outlier_images = outlier_image_dataset(dor_args, processor) if dor_args.dor_outlier_images else None
    with usage_errors("DOR"):
        return DORConfig(
            weight=dor_args.dor_weight,
            pool_size=dor_args.dor_pool_size,
            num_outliers=dor_args.dor_num_outliers,
            selection=dor_args.dor_selection,
            resample=dor_args.dor_resample,
            sampling=dor_args.dor_sampling,
            template=dor_args.dor_template,
            vocabulary=vocabulary,
            side=dor_args.dor_side,
            outlier_images=outlier_images,
        )


def outlier_image_dataset(dor_args, processor):
    from ..data import CLIPImageTransform, load_benchmark, with_clip_transform
    from ..dor.config import DEFAULT_POOL_SIZE

    source = dor_args.dor_outlier_images
    local = os.path.isdir(os.path.expanduser(source))
    with usage_errors(f"--dor_outlier_images {source}"):
        splits = load_benchmark(data_dir=source) if local else load_benchmark(dataset_name=source)
    images = splits["train"]
    limit = dor_args.dor_pool_size or DEFAULT_POOL_SIZE
    if len(images) > limit:
        images = images.shuffle(seed=0).select(range(limit))
    return with_clip_transform(images, CLIPImageTransform(processor, train=False))


def method_config(command: TrainCommand, class_names: list[str], template: str):
    """The method's PEFT config (refusing bad field values with the field named)."""
    values = dataclasses.asdict(command.method_options)
    values.update(parse_method_config(command.run.method_config))
    with usage_errors(f"--method {command.run.method}"):
        return command.config_cls(class_names=class_names, template=template, **values)


def load_base_model(name_or_path: str, revision: str | None = None, cache_dir: str | None = None):
    """The base model at ``name_or_path`` as the transformers class its config names (``CLIPModel`` for
    ``model_type="clip"``, ``SiglipModel`` for ``"siglip"``: ``peft_dor.prompting.backbone``).

    Raises:
        UsageError: naming ``--model_name_or_path`` when the backbone is not supported.
    """
    import transformers
    from transformers import AutoConfig

    from ..prompting import backbone

    config = AutoConfig.from_pretrained(name_or_path, revision=revision, cache_dir=cache_dir)
    with usage_errors(f"--model_name_or_path {name_or_path}"):
        record = backbone(config)
    model_class = getattr(transformers, record.model_class)
    return model_class.from_pretrained(name_or_path, config=config, revision=revision, cache_dir=cache_dir)


def build_model(command: TrainCommand, config):
    from peft import get_peft_model

    model_args = command.model
    base = load_base_model(model_args.model_name_or_path, model_args.model_revision, model_args.cache_dir)
    return get_peft_model(base, config)


def vocabulary_record(dor, regularizer) -> dict[str, Any] | None:
    """Name, size and hash of the DOR vocabulary and of the pool drawn from it (text-side DOR only)."""
    if dor is None or regularizer is None or getattr(regularizer, "pool", None) is None:
        return None
    from ..dor.vocabulary import load_vocabulary, vocabulary_hash

    record: dict[str, Any] = {"side": regularizer.side, "pool_size": len(regularizer.pool)}
    if regularizer.side == "text":
        terms = load_vocabulary(dor.vocabulary, regularizer.cache_root())
        name = dor.vocabulary if isinstance(dor.vocabulary, str) else "custom list"
        record.update(name=name, size=len(terms), sha256=vocabulary_hash(terms))
        record["pool_sha256"] = vocabulary_hash(regularizer.pool.names or [])
    return record
