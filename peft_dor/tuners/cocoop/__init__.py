"""CoCoOp: CoOp's context shifted by a meta-net of each image's feature."""

from ...registry import MethodSpec, register_method
from .config import CoCoOpConfig
from .layer import CoCoOpContextLayer
from .model import CoCoOpModel

register_method(MethodSpec("COCOOP", CoCoOpConfig, CoCoOpModel, "CoCoOp"))

__all__ = ["CoCoOpConfig", "CoCoOpContextLayer", "CoCoOpModel"]
