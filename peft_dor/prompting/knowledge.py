"""Hand-crafted knowledge shared by the text-side methods: frozen name features, the knowledge-guided distance and
the small generator networks that turn a feature into prompt vectors.

* KgCoOp and TCP pull the prompted class features towards frozen CLIP's features of a hand-crafted template with
  ``1 - mean cos`` (:func:`knowledge_distance`); DOR uses the same form on outlier names.
* TCP feeds frozen features of *any* name (training classes, new classes, DOR outliers) to its class-aware prompt
  module; :class:`FrozenTextFeatures` serves them from the base model with prompts suspended, caching the class list
  as a whole and every other name on its own, so outliers drawn afresh each step are encoded once per word.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


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


def _autocast_key(device: torch.device):
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


class FrozenTextFeatures:
    """Frozen CLIP features of ``template.format(name)`` for any list of names, from the wrapped model itself.

    The model's class list comes from :meth:`PromptCLIP.zero_shot_text_features` (cached there as a whole); every
    other name (a DOR outlier, a new class) is encoded on its own the first time it is asked for and kept per name, so
    a run that draws fresh outliers every step encodes each word of the pool once, the cache holds at most one row per
    word instead of one tensor per step, and a name's features never depend on the names drawn with it.

    Args:
        max_names: drop the per-name cache when it grows past this many rows (a safety bound; a DOR pool is 5,000).

    Example:
        ```python
        frozen = FrozenTextFeatures()
        features = frozen(wrapper, wrapper.class_names + ["lamp"], "a photo of a {}.")  # (C + 1, D)
        ```
    """

    def __init__(self, max_names: int = 200_000) -> None:
        self.max_names = max_names
        self._rows: dict[tuple, torch.Tensor] = {}

    def __call__(self, wrapper: nn.Module, names: Sequence[str], template: str) -> torch.Tensor:
        names = list(names)
        classes = wrapper.class_names
        head = None
        if names[: len(classes)] == classes:
            head = wrapper.zero_shot_text_features(classes, template)
            names = names[len(classes) :]
        if not names:
            return head
        scope = (template, wrapper.device, _autocast_key(wrapper.device))
        missing = list(dict.fromkeys(name for name in names if (*scope, name) not in self._rows))
        if missing and len(self._rows) + len(missing) > self.max_names:
            self._rows.clear()
            missing = list(dict.fromkeys(names))
        # One pass per new name: a batched pass rounds differently with its batch, so a name's features would depend
        # on which names were drawn with it, and a resumed run would drift from the uninterrupted one in the last bits.
        for name in missing:
            self._rows[(*scope, name)] = wrapper.zero_shot_text_features([name], template, cache=False)[0]
        tail = torch.stack([self._rows[(*scope, name)] for name in names])
        return tail if head is None else torch.cat([head, tail])
