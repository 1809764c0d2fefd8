"""Every peft-dor method on the tiny CLIP (the cases of ``tests/method_cases.py``), and a small synthetic training set,
for the reliability tests.

Imported by the tests and by ``_ddp_all_methods.py`` (which torchrun starts with the repository on ``PYTHONPATH``),
so it depends on nothing but the libraries (no pytest).
"""

from __future__ import annotations

import torch

from ..helpers import learnable_pixel_rows, tiny_training_args
from ..method_cases import CLASS_NAMES, METHOD_CASES, VOCABULARY

__all__ = ["CLASS_NAMES", "METHOD_CASES", "VOCABULARY"]  # re-exported for the reliability tests


def method_config(key: str, class_names=CLASS_NAMES, **overrides):
    _, config_class, kwargs = METHOD_CASES[key]
    return config_class(class_names=class_names, **{**kwargs, **overrides})


def build_model(key: str, model_path: str, seed: int = 0, **overrides):
    """A fresh ``PeftModel`` of method ``key`` on the tiny CLIP at ``model_path``; ``seed`` fixes the prompt init."""
    from peft import get_peft_model
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return get_peft_model(CLIPModel.from_pretrained(model_path), method_config(key, **overrides))


def image_rows(n: int, seed: int = 0, n_classes: int = len(CLASS_NAMES)) -> list[dict]:
    """``n`` learnable training rows ``(3, 32, 32)`` over the case classes (``tests.helpers.learnable_pixel_rows``)."""
    return learnable_pixel_rows(n, n_classes, seed=seed)


def outlier_images(n: int = 6, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def dor_config(key: str, cache_dir: str | None = None, **overrides):
    """Text-side DOR over :data:`VOCABULARY`, or image-side DOR for VPT (no text prompts)."""
    from peft_dor import DORConfig

    settings = {"pool_size": 16, "num_outliers": 3, "cache_dir": cache_dir, "cache_features": cache_dir is not None}
    if key == "vpt":
        settings.update(side="image", outlier_images=outlier_images())
    else:
        settings.update(vocabulary=list(VOCABULARY))
    return DORConfig(**{**settings, **overrides})


def trainer_class(key: str):
    """``DORTrainer`` for every method: it composes what the method declares (ProGrad's projection, PromptSRC's GPA)."""
    from peft_dor import DORTrainer

    return DORTrainer


def training_args(output_dir: str, **overrides):
    settings = {"learning_rate": 0.05, "logging_steps": 1, "lr_scheduler_type": "constant"}
    return tiny_training_args(output_dir, **{**settings, **overrides})


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The adapter's trained tensors by name, detached and contiguous (for comparisons and safetensors)."""
    return {name: p.detach().clone().contiguous() for name, p in model.named_parameters() if p.requires_grad}
