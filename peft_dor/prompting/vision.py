"""How prompts reach CLIP's vision tower, and which modules prompts of a given depth wrap in either tower.

Three facts about CLIP's vision tower (transformers 5.x) shape this module:

* ``vision_model.embeddings`` returns the patch tokens with CLS prepended and the position embeddings already
  added, and ``pre_layrnorm`` runs *after* it: tokens appended to the embeddings' output sit exactly "after the
  position embeddings, before the pre-LayerNorm", where VPT, IVLP and MaPLe put their layer-0 prompts;
* the tower pools the CLS token (index 0), so the sequence may grow: appending ``n_v`` tokens moves nothing;
* HF's vision model calls its embeddings and encoder layers itself, so the prompt layers that replace them keep
  the wrapped modules' call signatures and pass every other argument through unchanged.

Deep prompts at depth ``J`` overwrite the prompt tokens at the input of layers ``1..J-1`` with each layer's own
vectors (the last ``n_v`` tokens here; slots ``1..n`` on the text side); from layer ``J`` on, the outputs at those
positions propagate. :func:`prompt_targets` turns per-tower depths into the module names a method wraps.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: module-name patterns (regular expressions, matched at the end of a module name) of the places prompts enter
TEXT_EMBEDDINGS = r"text_model\.embeddings"
TEXT_LAYERS = r"text_model\.encoder\.layers\.\d+"
VISION_EMBEDDINGS = r"vision_model\.embeddings"
VISION_LAYERS = r"vision_model\.encoder\.layers\.\d+"


def prompt_targets(depths: Mapping[str, int]) -> list[str]:
    """The CLIP modules that prompts of depth ``J`` wrap in each tower: the embeddings and encoder layers 1..J-1.

    Args:
        depths: tower (``"text"`` or ``"vision"``) -> prompt depth ``J``; 0 leaves the tower untouched.

    Example:
        ```python
        prompt_targets({"vision": 3})
        # ['vision_model.embeddings', 'vision_model.encoder.layers.1', 'vision_model.encoder.layers.2']
        ```
    """
    targets: list[str] = []
    for tower, depth in depths.items():
        if depth >= 1:
            targets.append(f"{tower}_model.embeddings")
            targets.extend(f"{tower}_model.encoder.layers.{i}" for i in range(1, depth))
    return targets


def append_prompts(hidden_states: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``[hidden_states, prompts]`` along the sequence: ``(B, L, D)`` and ``(n, D)`` give ``(B, L + n, D)``."""
    prompts = prompts.to(hidden_states.dtype).expand(hidden_states.shape[0], -1, -1)
    return torch.cat([hidden_states, prompts], dim=1)


def replace_last_tokens(hidden_states: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``hidden_states`` with its last ``n`` tokens replaced by ``prompts`` ``(n, D)``, out of place."""
    return append_prompts(hidden_states[:, : -prompts.shape[-2]], prompts)
