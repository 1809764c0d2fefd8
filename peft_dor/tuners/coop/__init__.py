"""CoOp: learned context words in front of the class name. DOR's λ is 8 here (the DOR paper), 2 elsewhere."""

from ...registry import MethodSpec, register_method
from .config import CoOpConfig
from .layer import CoOpContextLayer
from .model import CoOpModel

register_method(MethodSpec("COOP", CoOpConfig, CoOpModel, "CoOp", default_dor_weight=8.0))

__all__ = ["CoOpConfig", "CoOpContextLayer", "CoOpModel"]
