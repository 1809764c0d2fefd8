"""KgCoOp: CoOp plus a knowledge-guided loss towards frozen CLIP's hand-crafted prompts."""

from ...registry import MethodSpec, register_method
from .config import KgCoOpConfig
from .layer import KgCoOpContextLayer
from .model import KgCoOpModel
from .templates import TEMPLATES

register_method(MethodSpec("KGCOOP", KgCoOpConfig, KgCoOpModel, "KgCoOp", templates=TEMPLATES))

__all__ = ["KgCoOpConfig", "KgCoOpContextLayer", "KgCoOpModel"]
