"""The one table of method cases: the method matrix (``tests/tuners``) runs every case through its columns, the
reliability tests (``tests/reliability``) run each method's main case.

A case is ``(name, config class, config kwargs)`` for the tiny CLIP of ``tests/conftest.py`` (2 text and 2 vision
layers, width 32, projection 24, 32 px images), so every depth is at most 2. The same cases run on the tiny SigLIP
(same depths and widths, 64 text positions): :data:`BACKBONE_CASES` is the matrix's backbone axis. Imported by scripts that torchrun starts
with the repository on ``PYTHONPATH``, so it depends on nothing but the libraries (no pytest).
"""

from __future__ import annotations

from typing import NamedTuple

from peft_dor import (
    CoCoOpConfig,
    CoOpConfig,
    IVLPConfig,
    KgCoOpConfig,
    MaPLeConfig,
    ProGradConfig,
    PromptSRCConfig,
    TCPConfig,
    VPTConfig,
)
from peft_dor.registry import method_spec
from peft_dor.testing import TINY_WORDS

CLASS_NAMES = ["cat", "dog", "bird", "horse", "ship"]
#: outlier terms: the tiny tokenizer's nouns that are no class name
VOCABULARY = [word for word in TINY_WORDS[TINY_WORDS.index("tree") :] if word not in CLASS_NAMES]
TEACHER_TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "art of a {}."]
PET = "a photo of a {}, a type of pet."


class MethodCase(NamedTuple):
    """One row of the table; unpacks as ``name, config_class, kwargs``."""

    name: str
    config_class: type
    kwargs: dict

    @property
    def method(self) -> str:
        """The registry key of the case's method, lower case (``"vpt"``)."""
        return method_spec(self.config_class).key.lower()


TEXT_CASES: list[MethodCase] = [
    MethodCase("coop", CoOpConfig, {"n_ctx": 4}),
    MethodCase("cocoop", CoCoOpConfig, {"meta_net_hidden_dim": 8}),
    MethodCase("kgcoop", KgCoOpConfig, {"template": PET}),
    MethodCase("tcp", TCPConfig, {"class_token_layer": 1}),
    MethodCase(
        "tcp-layout",
        TCPConfig,
        {"class_token_layer": 1, "template": PET, "prompt_template": "X X X X {}, a type of pet."},
    ),
    MethodCase("prograd", ProGradConfig, {"n_ctx": 8, "ctx_init": "a photo of a {}."}),
]
#: the vision and multimodal methods; text-only IVLP and MaPLe's random init are covered in test_vision_methods.py
VISION_CASES: list[MethodCase] = [
    MethodCase("vpt-shallow", VPTConfig, {"vision_tokens": 3}),
    MethodCase("vpt-deep", VPTConfig, {"vision_tokens": 2, "deep": True}),
    MethodCase("ivlp", IVLPConfig, {"n_ctx": 2, "vision_tokens": 2, "text_depth": 2, "vision_depth": 2}),
    MethodCase("maple", MaPLeConfig, {"depth": 2}),
    MethodCase(
        "promptsrc", PromptSRCConfig, {"text_depth": 2, "vision_depth": 2, "teacher_templates": TEACHER_TEMPLATES}
    ),
]
CASES: list[MethodCase] = TEXT_CASES + VISION_CASES
#: the extra variants the matrix runs besides each method's main case
VARIANTS = frozenset({"tcp-layout", "vpt-shallow"})
#: method key (``"coop"``) -> its main case, one per registered method
METHOD_CASES: dict[str, MethodCase] = {case.method: case for case in CASES if case.name not in VARIANTS}


class BackboneCase(NamedTuple):
    """One backbone of the matrix: the session fixture holding its tiny model's folder, and how plain transformers
    tokenises the reference prompts for it (the way the backbone was pre-trained)."""

    name: str
    path_fixture: str
    reference_tokenizer_kwargs: dict


BACKBONE_CASES: list[BackboneCase] = [
    BackboneCase("clip", "tiny_clip_path", {"padding": True}),
    # SigLIP: every text padded to the tower's 64 positions and no attention mask, as in its pre-training
    BackboneCase("siglip", "tiny_siglip_path", {"padding": "max_length", "return_attention_mask": False}),
]
