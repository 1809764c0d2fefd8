"""Losses more than one method shares.

KgCoOp and TCP pull the prompted class features towards frozen CLIP's features of a hand-crafted template with
``1 - mean cos`` (:func:`knowledge_distance`); DOR's loss has the same form on outlier names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knowledge_distance(features: torch.Tensor, frozen: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - mean cos(features, frozen)`` over the last dimension (KgCoOp's and TCP's code form, DOR's loss).

    Args:
        features: ``(..., P, D)`` prompted features (normalised or not).
        frozen: ``(P, D)`` frozen target features, broadcast over the leading dimensions of ``features`` (CoCoOp's
            per-image features are thus averaged over images and names).
        eps: ``torch.nn.CosineSimilarity``'s eps; the official code uses 1e-7.

    Example:
        ```python
        loss = 8.0 * knowledge_distance(output.text_embeds, model.zero_shot_text_features())
        ```
    """
    frozen = frozen.to(device=features.device, dtype=features.dtype)
    return 1.0 - F.cosine_similarity(features, frozen, dim=-1, eps=eps).mean()
