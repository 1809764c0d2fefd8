"""How a prompt reaches CLIP: the machinery every method shares, one concept per module.

============== ==========================================================================================
``backbone``   what a backbone is like (text causal or not, pooling, padding, projection, logit bias), from its config
``checks``     argument checks that name the field and the fix
``tokenizer``  prompt pieces, learned slots and the padding policy (:class:`PromptTokenizer`)
``text``       the hand-driven text tower and the per-pass context its prompt layers read
``prefix``     exact prefix sharing under causal attention: the shared prompt prefix encoded once per pass
``vision``     where visual prompts enter the vision tower; which modules prompts of a given depth wrap
``layers``     the PEFT layer base and the text / vision prompt-layer bases
``config``     config bases: shared fields, CoOp-style context, deep prompts
``tuner``      :class:`PromptTuner`, the PEFT ``BaseTuner`` every method subclasses
``classifier`` :class:`PromptCLIP`, the module PEFT wraps: logits, caches, the frozen-features API
``frozen``     frozen features of hand-crafted prompts, batched by length and cached
``losses``     losses several methods share
``recipes``    published training settings
============== ==========================================================================================

A method folder (``peft_dor/tuners/<method>/``) imports what it needs from here, ``from ...prompting import ...``.
"""

from .backbone import Backbone, TextRules, backbone, embed_dim, text_projection, text_rules
from .checks import check_class_names, check_depth, check_number, check_template
from .classifier import PromptClassifierOutput, PromptCLIP
from .config import ContextPromptConfig, DeepContextPromptConfig, DeepPromptConfigMixin, PromptConfig
from .frozen import autocast_key
from .layers import DeepTextPromptLayer, DeepVisionPromptLayer, PromptLayer, TextContextLayer, VisionPromptLayer
from .losses import knowledge_distance
from .recipes import TrainingRecipe
from .text import TextPromptContext, TextTower, causal_mask, replace_slots
from .tokenizer import PromptLayout, PromptTokenizer, TokenizedPrompts, phrase_words, prompt_name
from .tuner import DeepPromptTuner, PromptTuner
from .vision import TEXT_EMBEDDINGS, TEXT_LAYERS, VISION_EMBEDDINGS, VISION_LAYERS, prompt_targets

__all__ = [
    "Backbone",
    "TEXT_EMBEDDINGS",
    "TEXT_LAYERS",
    "VISION_EMBEDDINGS",
    "VISION_LAYERS",
    "ContextPromptConfig",
    "DeepContextPromptConfig",
    "DeepPromptConfigMixin",
    "DeepPromptTuner",
    "DeepTextPromptLayer",
    "DeepVisionPromptLayer",
    "PromptCLIP",
    "PromptClassifierOutput",
    "PromptConfig",
    "PromptLayer",
    "PromptLayout",
    "PromptTokenizer",
    "PromptTuner",
    "TextContextLayer",
    "TextPromptContext",
    "TextRules",
    "TextTower",
    "TokenizedPrompts",
    "TrainingRecipe",
    "VisionPromptLayer",
    "autocast_key",
    "backbone",
    "causal_mask",
    "text_projection",
    "text_rules",
    "check_class_names",
    "check_depth",
    "check_number",
    "check_template",
    "embed_dim",
    "knowledge_distance",
    "phrase_words",
    "prompt_name",
    "prompt_targets",
    "replace_slots",
]
