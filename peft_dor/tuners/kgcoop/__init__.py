"""KgCoOp: CoOp plus a knowledge-guided loss towards frozen CLIP's hand-crafted prompts."""

from ...registry import MethodSpec, register_method
from .config import KgCoOpConfig
from .layer import KgCoOpContextLayer
from .model import KgCoOpModel

register_method(MethodSpec("KGCOOP", KgCoOpConfig, KgCoOpModel, "KgCoOp", template_variant="kgcoop"))

__all__ = ["KgCoOpConfig", "KgCoOpContextLayer", "KgCoOpModel"]
