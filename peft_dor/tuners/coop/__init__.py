from .config import CoOpConfig
from .layer import CoOpContextLayer
from .model import CoOpModel

__all__ = ["CoOpConfig", "CoOpContextLayer", "CoOpModel"]
