from __future__ import annotations

from ...prompting import TextContextLayer


class KgCoOpContextLayer(TextContextLayer):
    """KgCoOp's context vectors in place of ``text_model.embeddings`` (CoOp's prompt, ``end`` layout)."""

    adapter_layer_names = ("kgcoop_ctx",)
