from .config import PROMPTSRC_TEMPLATES, PromptSRCConfig
from .model import PromptSRCModel, template_ensemble_features

__all__ = ["PROMPTSRC_TEMPLATES", "PromptSRCConfig", "PromptSRCModel", "template_ensemble_features"]
