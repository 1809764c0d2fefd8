"""ProGrad: CoOp's prompt trained with prompt-aligned gradients (the projection is a Trainer mixin, ``training.py``)."""

from ...registry import MethodSpec, register_method
from .config import ProGradConfig
from .layer import ProGradContextLayer
from .model import ProGradModel
from .templates import TEMPLATES
from .training import ProGradMixin, prograd_kl_loss, project_conflicting_gradient

# DORTrainer (or any Trainer through ProGradMixin) applies the gradient projection at each optimiser step
register_method(
    MethodSpec("PROGRAD", ProGradConfig, ProGradModel, "ProGrad", trainer_mixins=(ProGradMixin,), templates=TEMPLATES)
)

__all__ = [
    "ProGradConfig",
    "ProGradContextLayer",
    "ProGradMixin",
    "ProGradModel",
    "project_conflicting_gradient",
    "prograd_kl_loss",
]
