from .config import CoCoOpConfig
from .layer import CoCoOpContextLayer
from .model import CoCoOpModel

__all__ = ["CoCoOpConfig", "CoCoOpContextLayer", "CoCoOpModel"]
