from .config import KgCoOpConfig
from .layer import KgCoOpContextLayer
from .model import KgCoOpModel

__all__ = ["KgCoOpConfig", "KgCoOpContextLayer", "KgCoOpModel"]
