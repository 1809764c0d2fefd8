"""Checks that run before the model is loaded: the model source, WordNet, and the data (splits and images).

Each failure is a :class:`~peft_dor.cli.errors.UsageError` naming the flag (or the class and folder) and the fix.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import UsageError, usage_errors
from .output import logger


def check_model_source(name: str, revision: str | None = None, cache_dir: str | None = None) -> None:
    """``--model_name_or_path`` must be a model folder, or a Hub id that can be loaded (cached when offline)."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UsageError(
                f"--model_name_or_path {name}: the folder has no config.json; give a folder written by "
                "CLIPModel.save_pretrained (or SiglipModel's), or a Hub id such as openai/clip-vit-base-patch16 or "
                "google/siglip-base-patch16-224."
            )
        check_backbone(name, os.path.join(path, "config.json"))
        return
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise UsageError(
            f"--model_name_or_path {name}: no such folder, and not a Hub id; give a CLIP model folder or a Hub id "
            "such as openai/clip-vit-base-patch16."
        ) from None
    if name.startswith((".", "~")):
        raise UsageError(f"--model_name_or_path {name}: no such folder; check the path.")
    cached = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision)
    if isinstance(cached, str):
        check_backbone(name, cached)
        return
    if constants.HF_HUB_OFFLINE:
        raise UsageError(
            f"--model_name_or_path {name}: not a folder and not in the Hub cache, and HF_HUB_OFFLINE is set; "
            "download it once online (or unset HF_HUB_OFFLINE), or give a local model folder."
        )


def check_backbone(name: str, config_file: str) -> None:
    """The model's ``config.json`` must name a supported backbone (``model_type`` "clip" or "siglip")."""
    import json

    from ..prompting.backbone import BACKBONES

    try:
        with open(config_file, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (OSError, ValueError) as error:
        raise UsageError(f"--model_name_or_path {name}: cannot read its config.json ({error}).") from None
    if model_type not in BACKBONES:
        supported = ", ".join(f"{record.model_class} ({key!r})" for key, record in BACKBONES.items())
        raise UsageError(
            f"--model_name_or_path {name}: model_type={model_type!r} is not a supported backbone; give a "
            f"{supported} checkpoint, e.g. openai/clip-vit-base-patch16 or google/siglip-base-patch16-224."
        )


def check_wordnet(dor_args) -> None:
    """DOR's default vocabulary is WordNet: say how to install it before anything else runs."""
    if not dor_args.dor or dor_args.dor_vocabulary != "wordnet" or dor_args.dor_side == "image":
        return
    from ..dor.vocabulary import wordnet_available

    if not wordnet_available():
        raise UsageError(
            "--dor_vocabulary wordnet: WordNet 3.0 is not installed; run `apt-get install wordnet-base` (Debian/Ubuntu) "
            "or, online, `python -m nltk.downloader wordnet`; or give --dor_vocabulary FILE, or --no_dor "
            "(docs/quickstart.md)."
        )


def load_splits(data_args, model_args):
    """The data of the run as ``train`` / ``test`` splits (refusing malformed folders with the folder named)."""
    from ..data import load_benchmark

    if not any((data_args.data_root, data_args.data_dir, data_args.dataset_name)):
        raise UsageError(
            "no data: give --data_dir (an image folder), --data_root with --dataset (the CoOp layout) or "
            "--dataset_name (a Hub dataset); --demo runs the offline world demo."
        )
    name = data_args.dataset if data_args.dataset not in (None, "demo") else None
    kwargs: dict[str, Any] = {}
    if data_args.dataset_name is not None:
        kwargs.update(cache_dir=model_args.cache_dir)
    source = data_args.data_dir or data_args.data_root or data_args.dataset_name
    with usage_errors(f"data {source}"):
        return load_benchmark(
            name,
            data_root=data_args.data_root,
            data_dir=data_args.data_dir,
            dataset_name=data_args.dataset_name,
            dataset_config_name=data_args.dataset_config_name,
            image_column=data_args.image_column,
            label_column=data_args.label_column,
            test_split=data_args.test_split,
            **kwargs,
        )


def check_data(splits, data_args) -> None:
    """Refuse splits that would give meaningless numbers; decode every image when asked (or when few)."""
    from ..data.validation import AUTO_VERIFY_LIMIT, validate_splits, verify_images

    source = data_args.data_dir or data_args.data_root or data_args.dataset_name
    with usage_errors(f"data {source}"):
        validate_splits(splits, shots=data_args.shots, task=data_args.task)
        if data_args.verify_images is not False:
            limit = None if data_args.verify_images else AUTO_VERIFY_LIMIT
            chosen = {k: v for k, v in splits.items() if k in ("train", "test")}
            if chosen.get("train") is chosen.get("test"):  # evaluation-only data: one split in both roles
                chosen.pop("train")
            checked = verify_images(chosen, limit=limit)
            if checked:
                logger.info("decoded all %d images of %s", checked, source)
