"""MaPLe: deep text prompts whose linear maps are the vision tower's prompts."""

from ...registry import MethodSpec, register_method
from .config import MaPLeConfig
from .layer import MaPLeContextLayer, MaPLeDeepTextLayer, MaPLeDeepVisionLayer, MaPLeVisionLayer
from .model import MaPLeModel

register_method(MethodSpec("MAPLE", MaPLeConfig, MaPLeModel, "MaPLe"))

__all__ = [
    "MaPLeConfig",
    "MaPLeContextLayer",
    "MaPLeDeepTextLayer",
    "MaPLeDeepVisionLayer",
    "MaPLeModel",
    "MaPLeVisionLayer",
]
