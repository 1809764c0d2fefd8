"""VPT: visual prompt tokens only (shallow or deep), the text side frozen."""

from ...registry import MethodSpec, register_method
from .config import VPTConfig
from .layer import VPTDeepVisionLayer, VPTVisionLayer
from .model import VPTModel
from .templates import TEMPLATES

# no text prompts: DOR pulls the prompted features of outlier *images* towards their zero-shot features
register_method(MethodSpec("VPT", VPTConfig, VPTModel, "VPT", dor_side="image", templates=TEMPLATES))

__all__ = ["VPTConfig", "VPTDeepVisionLayer", "VPTModel", "VPTVisionLayer"]
