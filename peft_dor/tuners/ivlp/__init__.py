"""IVLP: independent deep prompts in the text and the vision tower (MaPLe's baseline, PromptSRC's prompts)."""

from ...registry import MethodSpec, register_method
from .config import IVLPConfig
from .layer import IVLPContextLayer, IVLPDeepTextLayer, IVLPDeepVisionLayer, IVLPVisionLayer
from .model import IVLPModel

register_method(MethodSpec("IVLP", IVLPConfig, IVLPModel, "IVLP"))

__all__ = [
    "IVLPConfig",
    "IVLPContextLayer",
    "IVLPDeepTextLayer",
    "IVLPDeepVisionLayer",
    "IVLPModel",
    "IVLPVisionLayer",
]
