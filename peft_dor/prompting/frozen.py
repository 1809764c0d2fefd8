"""Frozen CLIP's text features of hand-crafted prompts: the one place they are computed and cached.

Every frozen text target of the package comes from here, through :meth:`PromptCLIP.frozen_text_features`: the
zero-shot class features (KgCoOp's and TCP's targets, ProGrad's teacher, VPT's classifier), TCP's class knowledge of
any name, PromptSRC's template ensemble and DOR's outlier vocabulary. Prompts run through the base model with every
prompt layer suspended, in batches of similar length (each batch is padded to its longest prompt, so length order runs
~2.4x faster than list order on WordNet, ``benchmarks/bench_vocabulary_cache.py``), and the cache key holds the
device and the autocast dtype (:func:`autocast_key`), so a bf16 pass never serves a float32 caller.

Two caches, chosen by the caller:

* ``cache="list"``: the result for a whole name list (the class names), returned as the same tensor next time;
* ``cache="names"``: one row per name, for names drawn afresh each step (TCP's tokens for DOR outliers); a name
  that is not cached is encoded *on its own*, because a batched pass rounds differently with its batch: its features
  would otherwise depend on the names drawn with it, and a resumed run would drift from the uninterrupted one in the
  last bits. A leading run of the class names is served from the list cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import embed_dim
from .text import TextPromptContext, TextTower

CACHE_MODES = ("list", "names", None)


def autocast_key(device: torch.device) -> torch.dtype | None:
    """The autocast dtype active on ``device``'s type, or None: the part of every frozen-feature cache key that keeps
    features computed under autocast apart from float32 ones."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


class FrozenTextCache:
    """The frozen-feature caches of one :class:`PromptCLIP`, which owns it and passes itself in (so a copy of the
    model never encodes through the original); see :meth:`PromptCLIP.frozen_text_features`.

    Args:
        max_rows: drop the per-name cache when it grows past this many rows (a safety bound; a DOR pool is 5,000).
    """

    def __init__(self, max_rows: int = 200_000) -> None:
        self.max_rows = max_rows
        self._lists: dict[tuple, torch.Tensor] = {}
        self._rows: dict[tuple, torch.Tensor] = {}

    def clear(self) -> None:
        self._lists.clear()
        self._rows.clear()

    @torch.no_grad()
    def encode(
        self,
        wrapper: nn.Module,
        names: Sequence[str],
        template: str,
        *,
        normalize: bool = True,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        progress: str | None = None,
    ) -> torch.Tensor:
        """Frozen features of ``template.format(name)``, ``(N, D)`` float32, in batches of ``batch_size`` prompts of
        similar length (default: the wrapper's ``text_chunk_size``, or all at once); no cache.

        Args:
            device: where the result goes (each batch is moved there as it is done); default the model's device.
            progress: a progress-bar label, or None for no bar.
        """
        prompts = wrapper.prompt_tokenizer.template_prompts(names, template)
        lengths = prompts.eos_index.tolist()
        order = sorted(range(len(names)), key=lengths.__getitem__)
        step = batch_size or wrapper.text_chunk_size or max(len(names), 1)
        out_device = wrapper.device if device is None else torch.device(device)
        features = torch.empty(len(names), embed_dim(wrapper.clip), dtype=torch.float32, device=out_device)
        tower = TextTower(wrapper.clip, share_prefix=wrapper.share_text_prefix)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(names), desc=progress, unit="prompt")
        with wrapper.prompts_suspended():
            for start in range(0, len(names), step):
                rows = torch.tensor(order[start : start + step], dtype=torch.long)
                batch = prompts.select_rows(rows).to(wrapper.device)
                chunk = tower(TextPromptContext(batch)).float()
                chunk = F.normalize(chunk, dim=-1) if normalize else chunk
                features[rows.to(out_device)] = chunk.to(out_device)
                if bar is not None:
                    bar.update(len(rows))
        if bar is not None:
            bar.close()
        return features

    def __call__(
        self,
        wrapper: nn.Module,
        names: Sequence[str],
        template: str,
        *,
        normalize: bool = True,
        cache: str | None = "list",
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        progress: str | None = None,
    ) -> torch.Tensor:
        if cache not in CACHE_MODES:
            raise ValueError(f"`cache` must be one of {CACHE_MODES}; got {cache!r}.")
        names = list(names)
        if not names:
            raise ValueError("`names` must hold at least one name to encode.")
        scope = (template, normalize, wrapper.device, autocast_key(wrapper.device))
        options = {"normalize": normalize, "batch_size": batch_size, "device": device, "progress": progress}
        if cache is None:
            return self.encode(wrapper, names, template, **options)
        if cache == "list":
            key = (tuple(names), *scope)
            if key not in self._lists:
                self._lists[key] = self.encode(wrapper, names, template, **options)
            return self._lists[key]
        classes = wrapper.class_names
        head = None
        if names[: len(classes)] == classes:
            head = self(
                wrapper, classes, template, normalize=normalize, cache="list", batch_size=batch_size, device=device
            )
            names = names[len(classes) :]
        if not names:
            return head
        missing = list(dict.fromkeys(name for name in names if (*scope, name) not in self._rows))
        if missing and len(self._rows) + len(missing) > self.max_rows:
            self._rows.clear()
            missing = list(dict.fromkeys(names))
        for name in missing:  # one pass per new name: see the module docstring
            self._rows[(*scope, name)] = self.encode(wrapper, [name], template, normalize=normalize, device=device)[0]
        tail = torch.stack([self._rows[(*scope, name)] for name in names])
        return tail if head is None else torch.cat([head, tail])
