"""Cases of the vision and multimodal methods (VPT, IVLP, MaPLe, PromptSRC) for the method matrix.

Owned by the vision-methods work; ``test_method_matrix.py`` runs every case listed here through the same columns as
the text-side methods. Each case is ``(name, config class, config kwargs)`` for the tiny CLIP of ``conftest.py``
(2 text and 2 vision layers, width 32, projection 24, 32 px images), so every depth is at most 2. Text-only IVLP
and MaPLe's random init are covered in ``test_vision_methods.py``.
"""

from __future__ import annotations

from peft_dor import IVLPConfig, MaPLeConfig, PromptSRCConfig, VPTConfig

VISION_CASES: list[tuple[str, type, dict]] = [
    ("vpt-shallow", VPTConfig, {"vision_tokens": 3}),
    ("vpt-deep", VPTConfig, {"vision_tokens": 2, "deep": True}),
    ("ivlp", IVLPConfig, {"n_ctx": 2, "vision_tokens": 2, "text_depth": 2, "vision_depth": 2}),
    ("maple", MaPLeConfig, {"depth": 2}),
    ("promptsrc", PromptSRCConfig, {"text_depth": 2, "vision_depth": 2}),
]
