from .config import MaPLeConfig
from .layer import MaPLeContextLayer, MaPLeDeepTextLayer, MaPLeDeepVisionLayer, MaPLeVisionLayer
from .model import MaPLeModel

__all__ = [
    "MaPLeConfig",
    "MaPLeContextLayer",
    "MaPLeDeepTextLayer",
    "MaPLeDeepVisionLayer",
    "MaPLeModel",
    "MaPLeVisionLayer",
]
