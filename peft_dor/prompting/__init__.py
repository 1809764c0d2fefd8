"""How a prompt reaches CLIP: the machinery every method shares."""

from .classifier import PromptClassifierOutput, PromptCLIP
from .config import ContextPromptConfig, PromptConfig
from .layers import PromptLayer
from .text import (
    PromptLayout,
    PromptTokenizer,
    TextContextLayer,
    TextPromptContext,
    TextTower,
    TokenizedPrompts,
    causal_mask,
    replace_slots,
)
from .tuner import PromptTuner

__all__ = [
    "ContextPromptConfig",
    "PromptCLIP",
    "PromptClassifierOutput",
    "PromptConfig",
    "PromptLayer",
    "PromptLayout",
    "PromptTokenizer",
    "PromptTuner",
    "TextContextLayer",
    "TextPromptContext",
    "TextTower",
    "TokenizedPrompts",
    "causal_mask",
    "replace_slots",
]
