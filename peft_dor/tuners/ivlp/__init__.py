from .config import IVLPConfig
from .layer import IVLPContextLayer, IVLPDeepTextLayer, IVLPDeepVisionLayer, IVLPVisionLayer
from .model import IVLPModel

__all__ = [
    "IVLPConfig",
    "IVLPContextLayer",
    "IVLPDeepTextLayer",
    "IVLPDeepVisionLayer",
    "IVLPModel",
    "IVLPVisionLayer",
]
