"""VPT: visual prompt tokens only (shallow or deep), the text side frozen."""

from ...registry import MethodSpec, register_method
from .config import VPTConfig
from .layer import VPTDeepVisionLayer, VPTVisionLayer
from .model import VPTModel

# no text prompts: DOR pulls the prompted features of outlier *images* towards their zero-shot features
register_method(MethodSpec("VPT", VPTConfig, VPTModel, "VPT", dor_side="image", template_variant="vpt"))

__all__ = ["VPTConfig", "VPTDeepVisionLayer", "VPTModel", "VPTVisionLayer"]
