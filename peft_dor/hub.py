"""Model cards and Hub uploads for peft-dor adapters.

transformers' ``PushToHubMixin.push_to_hub`` (which ``PeftModel.push_to_hub`` inherits) replaces the ``README.md``
that PEFT's ``save_pretrained`` wrote with a generic transformers card, losing ``library_name: peft`` and the tags. :func:`push_to_hub` saves the adapter to a temporary folder, writes a card that
keeps PEFT's metadata and adds what a user of a prompt adapter needs (method, base model, class names, template, DOR
settings, evaluation results), and uploads the folder with ``HfApi.upload_folder``. :func:`bind_push_to_hub` makes
``model.push_to_hub(...)`` of one model do the same.

Example:
    ```python
    import peft_dor
    from peft_dor.hub import push_to_hub

    push_to_hub(model, "user/coop-dor-dtd", results=results, dor=dor_config, dataset_name="dtd")

    # later, anywhere:
    from peft import PeftModel
    from transformers import CLIPModel
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained("openai/clip-vit-base-patch16"), "user/coop-dor-dtd")
    ```
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from .registry import method_spec

LIBRARY_TAG = "peft-dor"
PIPELINE_TAG = "zero-shot-image-classification"
_MAX_LISTED_CLASSES = 100
_MAX_LISTED_WORDS = 20


def _adapter_config(model, adapter_name: str | None = None):
    configs = getattr(model, "peft_config", None)
    if not configs:
        raise TypeError(
            f"Expected a PEFT model with a peft-dor adapter (get_peft_model / PeftModel.from_pretrained); got "
            f"{type(model).__name__}."
        )
    name = adapter_name or getattr(model, "active_adapter", None) or next(iter(configs))
    return configs[name]


def method_name(config) -> str:
    """``"coop"`` for a config whose ``peft_type`` is ``DOR_COOP``."""
    value = str(getattr(config.peft_type, "value", config.peft_type))
    return value.removeprefix("DOR_").lower()


def _is_hub_id(name: str | None) -> bool:
    if not name or os.path.exists(os.path.expanduser(name)):
        return False
    return re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name) is not None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(value, "to_dict") and not isinstance(value, Mapping):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _describe(value: Any) -> str:
    if isinstance(value, list) and len(value) > _MAX_LISTED_WORDS:
        return f"custom list of {len(value)} entries"
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"`{text}`"


def _pct(value: Any) -> str:
    return f"{100 * float(value):.2f}" if isinstance(value, (int, float)) else "–"


def _n_adapter_parameters(model) -> int | None:
    try:
        from peft import get_peft_model_state_dict

        return int(sum(t.numel() for t in get_peft_model_state_dict(model).values()))
    except Exception:  # pragma: no cover - only informative
        return None


def build_model_card(
    model,
    *,
    existing_card: str | os.PathLike | None = None,
    repo_id: str | None = None,
    base_model: str | None = None,
    results: Mapping[str, Any] | None = None,
    dor: Any = None,
    dataset_name: str | None = None,
    extra_tags: Sequence[str] = (),
    adapter_name: str | None = None,
    training: Mapping[str, Any] | None = None,
):
    """A ``huggingface_hub.ModelCard`` for a peft-dor adapter.

    Keeps every metadata field of ``existing_card`` (PEFT's ``README.md`` from ``save_pretrained``: ``library_name:
    peft`` and its tags) and adds ``base_model``, tags (``peft-dor``, the method, ``dor`` when DOR was
    used), ``model-index`` entries for the results, and a body with usage, class names, template and DOR settings.

    Args:
        model: the ``PeftModel``.
        existing_card: path of the card written by ``save_pretrained`` (its metadata is kept).
        repo_id: where the adapter will live (used in the usage snippet).
        base_model: Hub id of the base CLIP; defaults to the adapter config's ``base_model_name_or_path`` when that
            is a Hub id (a local path is only mentioned in the text: the Hub rejects it as ``base_model``).
        results: a base-to-new result dict (``{"base": {...}, "new": {...}, "hm": {...}}``, fractions).
        dor: the ``DORConfig`` (or a dict) used in training; None if trained without DOR.
        dataset_name: the training dataset's name, e.g. ``"dtd"``.
        extra_tags: more tags.
        training: the training hyper-parameters to state (shots, seed, epochs, learning rate, batch size, ...).

    No ``pipeline_tag`` is declared: ``transformers.pipeline(...)`` cannot run a prompt adapter (the classifier is a
    PEFT model around a CLIP wrapper, not a transformers model class), so the Hub widget would fail.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config = _adapter_config(model, adapter_name)
    method = method_name(config)
    backbone = _backbone(model)
    card = ModelCard.load(existing_card) if existing_card and os.path.exists(existing_card) else None
    data = card.data.to_dict() if card is not None else {}
    data["library_name"] = "peft"
    recorded_base = getattr(config, "base_model_name_or_path", None)
    base = base_model or (recorded_base if _is_hub_id(recorded_base) else None)
    if base:
        data["base_model"] = base
    data.pop("pipeline_tag", None)
    tags = list(data.get("tags") or [])
    wanted = [
        LIBRARY_TAG,
        method,
        backbone.name.lower(),
        "prompt-tuning",
        *(["dor", "calibration"] if dor else []),
        *extra_tags,
    ]
    if base:
        wanted.append(f"base_model:adapter:{base}")
    tags += [t for t in wanted if t not in tags]
    data["tags"] = tags
    if dataset_name and "/" in dataset_name and _is_hub_id(dataset_name):  # a Hub dataset id links the dataset page
        data.setdefault("datasets", [dataset_name])

    eval_results = []
    if results:
        dataset_type = dataset_name or "custom"
        for side in ("base", "new", "hm"):
            metrics = results.get(side) or {}
            for metric, name in (("accuracy", "accuracy (%)"), ("ece", "ECE (%)")):
                if isinstance(metrics.get(metric), (int, float)):
                    eval_results.append(
                        EvalResult(
                            task_type=PIPELINE_TAG,
                            dataset_type=dataset_type,
                            dataset_name=dataset_name or "evaluation",
                            metric_type=metric,
                            metric_value=round(100 * float(metrics[metric]), 2),
                            metric_name=f"{side} {name}",
                        )
                    )
    model_name = (repo_id or f"{method}-{dataset_name or backbone.name.lower()}").split("/")[-1]
    card_data = ModelCardData(eval_results=eval_results or None, model_name=model_name if eval_results else None)
    for key, value in data.items():
        if key not in ("model-index", "eval_results", "model_name"):
            card_data[key] = value

    body = _card_body(
        model, config, method, repo_id, base, recorded_base, results, dor, dataset_name, card, training, backbone
    )
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def _backbone(model):
    """The backbone record (``peft_dor.prompting.backbone``) of the model the adapter sits on; CLIP if unknown."""
    from .prompting.backbone import CLIP

    wrapper = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(wrapper, "backbone", CLIP)


def _card_body(
    model, config, method, repo_id, base, recorded_base, results, dor, dataset_name, peft_card, training, backbone
) -> str:
    from peft import __version__ as peft_version

    import peft_dor

    display = method_spec(config).display_name
    name, variable = backbone.name, backbone.name.lower()  # "CLIP" / "SigLIP"
    title = f"# {display}{' + DOR' if dor else ''} prompts for {name}" + (
        f" on {dataset_name}" if dataset_name else ""
    )
    n_params = _n_adapter_parameters(model)
    lines = [
        title,
        "",
        f"A [peft-dor](https://github.com/peft-dor/peft-dor) adapter: **{display}** prompt tuning of "
        f"`{base or recorded_base or f'a {name} model'}`, stored as a PEFT adapter"
        + (" and trained with Dynamic Outlier Regularization (DOR) for calibration" if dor else "")
        + ". It holds only the learned prompts"
        + (f" ({n_params:,} values)" if n_params else "")
        + f"; the {name} weights are loaded from the base model.",
        "",
        "## Usage",
        "",
        "```python",
        "import peft_dor  # registers the peft-dor methods with PEFT: import it before loading",
        "from peft import PeftModel",
        f"from transformers import {backbone.model_class}",
        "",
        f'{variable} = {backbone.model_class}.from_pretrained("{base or f"<Hub id of the base {name}>"}")',
        f'model = PeftModel.from_pretrained({variable}, "{repo_id or "path/to/adapter"}")',
        "logits = model(pixel_values=pixel_values).logits  # (batch, n_classes) over the classes below",
        'model.set_class_names(["other", "classes"])        # same prompts, any other class list',
        "```",
        "",
    ]
    if not base:
        lines += [
            f"The adapter was trained on a local {name} folder without a recorded Hub id; load the same {name} "
            f"weights (a different {name} gives meaningless logits with these prompts).",
            "",
        ]
    if training:
        lines += ["## Training", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_describe(v)} |" for k, v in training.items() if v is not None]
        lines.append("")
    names = list(getattr(config, "class_names", None) or [])
    if names:
        shown = ", ".join(f"`{n}`" for n in names[:_MAX_LISTED_CLASSES])
        more = f" … and {len(names) - _MAX_LISTED_CLASSES} more" if len(names) > _MAX_LISTED_CLASSES else ""
        lines += [f"## Classes ({len(names)})", "", shown + more, ""]
    skip = {
        "class_names",
        "auto_mapping",
        "inference_mode",
        "revision",
        "task_type",
        "peft_version",
        "peft_type",
        "base_model_name_or_path",
        "modules_to_save",
    }
    settings = {k: v for k, v in _plain(config).items() if k not in skip and v not in (None, [], {})}
    lines += ["## Prompt settings", "", "| setting | value |", "|---|---|", f"| method | `{method}` |"]
    lines += [f"| {k} | {_describe(v)} |" for k, v in sorted(settings.items())]
    lines.append("")
    if dor:
        lines += ["## DOR settings", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_describe(v)} |" for k, v in sorted(_plain(dor).items()) if v is not None]
        lines.append("")
    if results:
        lines += ["## Evaluation", ""]
        if dataset_name:
            lines += [f"Dataset: `{dataset_name}`. Values are percentages."]
        lines += ["", "| | accuracy | ECE | MCE | ACE | NLL |", "|---|---|---|---|---|---|"]
        for side, label in (("base", "base classes"), ("new", "new classes"), ("hm", "HM†")):
            m = results.get(side) or {}
            if m:
                nll = f"{float(m['nll']):.3f}" if isinstance(m.get("nll"), (int, float)) else "–"
                lines.append(
                    f"| {label} | {_pct(m.get('accuracy'))} | {_pct(m.get('ece'))} | {_pct(m.get('mce'))} | "
                    f"{_pct(m.get('ace'))} | {nll} |"
                )
        lines += [
            "",
            "† harmonic mean for accuracy; arithmetic mean (base + new) / 2 for the calibration metrics, as in the "
            "published tables.",
            "",
        ]
    versions = [f"- PEFT {peft_version}", f"- peft-dor {peft_dor.__version__}"]
    if peft_card is not None:  # keep any other framework lines PEFT (or a previous save) wrote
        for line in peft_card.text.splitlines():
            if line.startswith("- ") and line not in versions and ("PEFT" in line or "Transformers" in line):
                versions.append(line)
    lines += ["### Framework versions", "", *versions, ""]
    return "\n".join(lines)


def save_with_model_card(model, output_dir: str | os.PathLike, *, repo_id: str | None = None, **card_kwargs) -> str:
    """``model.save_pretrained(output_dir)`` followed by :func:`build_model_card` into ``output_dir/README.md``."""
    output_dir = os.fspath(output_dir)
    model.save_pretrained(output_dir)
    readme = os.path.join(output_dir, "README.md")
    build_model_card(model, existing_card=readme, repo_id=repo_id, **card_kwargs).save(readme)
    return output_dir


def push_to_hub(
    model,
    repo_id: str,
    *,
    results: Mapping[str, Any] | None = None,
    dor: Any = None,
    dataset_name: str | None = None,
    base_model: str | None = None,
    training: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    commit_message: str = "Upload peft-dor adapter",
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    extra_tags: Sequence[str] = (),
):
    """Upload the adapter of ``model`` to ``repo_id`` with a model card that keeps PEFT's metadata.

    The folder uploaded holds ``adapter_config.json``, ``adapter_model.safetensors`` and ``README.md`` (see
    :func:`build_model_card`), plus ``extra_files`` (``{name in repo: local path}``, e.g. ``results.json`` and
    reliability diagrams). ``PeftModel.from_pretrained(clip, repo_id)`` gives back a classifier over the training
    classes.

    Returns:
        The ``CommitInfo`` of ``HfApi.upload_folder``.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    with tempfile.TemporaryDirectory() as tmp:
        save_with_model_card(
            model,
            tmp,
            repo_id=repo_id,
            results=results,
            dor=dor,
            dataset_name=dataset_name,
            base_model=base_model,
            extra_tags=extra_tags,
            training=training,
        )
        for name, path in (extra_files or {}).items():
            target = os.path.join(tmp, name)
            os.makedirs(os.path.dirname(target) or tmp, exist_ok=True)
            shutil.copyfile(path, target)
        return api.upload_folder(
            folder_path=tmp,
            repo_id=repo_id,
            repo_type="model",
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )


def bind_push_to_hub(model, **card_kwargs):
    """Make ``model.push_to_hub(repo_id, ...)`` use :func:`push_to_hub` (with ``card_kwargs``) for this model only.

    Example:
        ```python
        bind_push_to_hub(model, results=results, dor=dor_config, dataset_name="dtd")
        model.push_to_hub("user/coop-dor-dtd")   # the card keeps library_name: peft, tags and the metrics
        ```
    """

    @functools.wraps(push_to_hub)
    def bound(repo_id: str, **kwargs):
        return push_to_hub(model, repo_id, **{**card_kwargs, **kwargs})

    # An instance attribute shadows PushToHubMixin.push_to_hub for this object only.
    object.__setattr__(model, "push_to_hub", bound)
    return model
