from __future__ import annotations

from ...prompting import TextContextLayer


class CoOpContextLayer(TextContextLayer):
    """CoOp's context vectors in place of ``text_model.embeddings`` (shared, or per class with CSC)."""

    adapter_layer_names = ("coop_ctx",)
