from .config import ProGradConfig
from .layer import ProGradContextLayer
from .model import ProGradModel

__all__ = ["ProGradConfig", "ProGradContextLayer", "ProGradModel"]
