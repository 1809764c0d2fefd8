from .config import VPTConfig
from .layer import VPTDeepVisionLayer, VPTVisionLayer
from .model import VPTModel

__all__ = ["VPTConfig", "VPTDeepVisionLayer", "VPTModel", "VPTVisionLayer"]
