"""How prompts reach CLIP's vision tower, and which modules prompts of a given depth wrap in either tower.

Three facts about CLIP's vision tower (transformers 5.x) shape this module:

* ``vision_model.embeddings`` returns the patch tokens with CLS prepended and the position embeddings already
  added, and ``pre_layrnorm`` runs *after* it: tokens appended to the embeddings' output sit exactly "after the
  position embeddings, before the pre-LayerNorm", where VPT, IVLP and MaPLe put their layer-0 prompts;
* the tower pools the CLS token (index 0), so the sequence may grow: appending ``n_v`` tokens moves nothing;
* HF's vision model calls its embeddings and encoder layers itself, so the prompt layers that replace them keep
  the wrapped modules' call signatures and pass every other argument through unchanged.

SigLIP's vision tower (``SiglipVisionModel``) differs: its embeddings are the patch tokens plus position embeddings
with no class token, there is no pre-LayerNorm, and ``vision_model.head`` (a multi-head attention probe) pools
*every* token after ``post_layernorm``. Appended prompts would be pooled by that head; :func:`patches_pooled_only`
cuts them off at the head's input, so prompts steer the patch tokens through attention but are not pooled, as VPT's
prompts on CLIP steer the class token and are not pooled (``docs/siglip.md`` gives the reasons).

Deep prompts at depth ``J`` overwrite the prompt tokens at the input of layers ``1..J-1`` with each layer's own
vectors (the last ``n_v`` tokens here; slots ``1..n`` on the text side); from layer ``J`` on, the outputs at those
positions propagate. :func:`prompt_targets` turns per-tower depths into the module names a method wraps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

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


def patch_token_count(vision_model: nn.Module, pixel_values: torch.Tensor) -> int:
    """How many patch tokens the vision embeddings make of ``pixel_values`` (the patch convolution has stride and
    kernel ``patch_size`` and no padding, so ``(H // p) * (W // p)``)."""
    patch = int(vision_model.config.patch_size)
    height, width = pixel_values.shape[-2:]
    return (int(height) // patch) * (int(width) // patch)


@contextmanager
def patches_pooled_only(vision_model: nn.Module, pixel_values: torch.Tensor, pooling: str) -> Iterator[None]:
    """Inside this block, a vision tower whose head pools every token (``pooling == "attention"``, SigLIP) pools the
    patch tokens only: tokens appended after them (visual prompts) are cut off at the head's input. Nothing changes
    for class-token pooling (CLIP), nor when no prompt was appended.

    Args:
        vision_model: the backbone's vision tower (``SiglipVisionModel``).
        pixel_values: the images of this pass, for the patch count.
        pooling: the backbone's ``vision_pooling`` rule (``"cls"`` or ``"attention"``).
    """
    head = getattr(vision_model, "head", None) if pooling == "attention" else None
    if head is None:
        yield
        return
    n_patches = patch_token_count(vision_model, pixel_values)

    def keep_patches(module, args):
        (hidden_state,) = args
        return (hidden_state[:, :n_patches],) if hidden_state.shape[1] > n_patches else None

    handle = head.register_forward_pre_hook(keep_patches)
    try:
        yield
    finally:
        handle.remove()
