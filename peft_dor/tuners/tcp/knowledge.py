"""TCP's class knowledge: frozen CLIP features of its template for any list of names (classes, new classes, outliers).

:class:`FrozenTextFeatures` serves them from the base model with prompts suspended, caching the class list as a whole
and every other name on its own, so outliers drawn afresh each step are encoded once per word.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
