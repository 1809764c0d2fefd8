# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Stateful, distributed-aware accumulation of calibration metrics (torchmetrics' design).

Binned metrics are not decomposable: the ECE of a union is *not* the mean of the per-part ECEs. So the accumulator
keeps the raw per-sample values (confidence, correctness and the NLL and Brier terms, i.e. four numbers per sample
rather than ``C``), concatenates them across ranks with ``torch.distributed.all_gather`` (torchmetrics'
``dist_reduce_fx="cat"``) and only then bins.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .functional import (
    EDGE_RULES,
    MCE_VARIANTS,
    ArrayLike,
    EdgeRule,
    MCEVariant,
    TopLabelStats,
    calibration_report_from_stats,
    check_choice,
    check_from_logits,
    check_n_bins,
    top_label_stats,
)

__all__ = ["CalibrationAccumulator", "all_gather_concat"]


def _comm_device(group: dist.ProcessGroup | None) -> torch.device:
    # NCCL only moves CUDA tensors; gloo (and a mixed "cpu:gloo,cuda:nccl" backend) moves CPU tensors.
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend and "gloo" not in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_concat(tensor: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Concatenates ``tensor`` from every rank along dim 0, in rank order; ranks may hold different numbers of rows.

    A no-op when ``torch.distributed`` is not initialised or the world has one process. Sizes are exchanged first and
    shorter tensors are padded for ``all_gather``, then trimmed, so no rank's rows are lost or duplicated. (Dropping
    the duplicates a distributed sampler adds to even out the last batch is the caller's job, as in ``accelerate``'s
    ``gather_for_metrics``; ``Trainer.evaluate`` already does it.)

    Args:
        tensor: A tensor of shape ``(n_rank, ...)``; trailing dimensions and dtype must agree across ranks.
        group: The process group (default: the world).

    Returns:
        The concatenation, on the CPU.

    Example:
        >>> all_gather_concat(torch.arange(3)).tolist()  # single process: unchanged
        [0, 1, 2]
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return tensor.cpu()
    device = _comm_device(group)
    local = tensor.to(device)
    size = torch.tensor([local.shape[0]], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if longest == 0:
        return tensor.cpu()
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(gathered, counts, strict=True)]).cpu()


class CalibrationAccumulator:
    """Accumulates predictions batch by batch and computes :func:`~peft_dor.metrics.calibration_report` on the whole.

    Under ``torch.distributed`` (any backend), :meth:`compute` all-gathers every rank's raw per-sample values before
    binning, so every rank gets the numbers of the full evaluation set, identical to a single process seeing all the
    data. Per-rank ECEs are never averaged.

    Args:
        n_bins: Number of bins for ECE, MCE and adaptive ECE (>= 1).
        mce_variant: ``"standard"`` or ``"weighted"`` (see :func:`~peft_dor.metrics.maximum_calibration_error`).
        edge_rule: ``"standard"`` or ``"lab"`` (see :func:`~peft_dor.metrics.expected_calibration_error`).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect per batch.
        extras: Also report ``rmsce``, ``confidence``, ``n_bins`` and ``n_samples``.
        sync_dist: Gather across ranks in :meth:`compute`. ``None`` (default) gathers whenever ``torch.distributed``
            is initialised; pass ``False`` when the inputs are already gathered (e.g. inside ``compute_metrics``).
        process_group: The process group to gather over (default: the world).

    Example:
        >>> acc = CalibrationAccumulator(n_bins=10)
        >>> acc.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> acc.update(torch.tensor([[0.0, 3.0]]), torch.tensor([1]))
        >>> acc.n_samples, round(acc.compute()["accuracy"], 4)
        (3, 0.6667)
    """

    def __init__(
        self,
        n_bins: int = 15,
        *,
        mce_variant: MCEVariant = "standard",
        edge_rule: EdgeRule = "standard",
        from_logits: bool | None = None,
        extras: bool = False,
        sync_dist: bool | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        self.n_bins = check_n_bins(n_bins)
        self.mce_variant = check_choice(mce_variant, MCE_VARIANTS, "mce_variant")
        self.edge_rule = check_choice(edge_rule, EDGE_RULES, "edge_rule")
        self.from_logits = check_from_logits(from_logits)
        self.extras = extras
        self.sync_dist = sync_dist
        self.process_group = process_group
        self._chunks: list[torch.Tensor] = []

    def update(self, preds: ArrayLike, labels: ArrayLike) -> None:
        """Adds a batch of logits or probabilities ``(B, C)`` and labels ``(B,)``, keeping 4 floats per sample."""
        stats = top_label_stats(preds, labels, from_logits=self.from_logits)
        self._chunks.append(torch.from_numpy(np.stack(stats, axis=1)))

    def reset(self) -> None:
        """Forgets everything accumulated so far."""
        self._chunks.clear()

    @property
    def n_samples(self) -> int:
        """Number of samples accumulated on this rank."""
        return sum(chunk.shape[0] for chunk in self._chunks)

    def _should_sync(self) -> bool:
        initialised = dist.is_available() and dist.is_initialized()
        return initialised if self.sync_dist is None else bool(self.sync_dist) and initialised

    def gathered_stats(self) -> TopLabelStats:
        """The per-sample values of all ranks (or of this rank when not syncing), concatenated in rank order.

        Collective: under ``torch.distributed`` every rank must call it (as :meth:`compute` does).
        """
        local = torch.cat(self._chunks) if self._chunks else torch.zeros((0, 4), dtype=torch.float64)
        if self._should_sync():
            local = all_gather_concat(local, self.process_group)
        columns = local.numpy().T
        return TopLabelStats(*(np.ascontiguousarray(c) for c in columns))

    def compute(self) -> dict[str, float]:
        """The :func:`~peft_dor.metrics.calibration_report` of everything accumulated (on all ranks).

        Collective under ``torch.distributed``: call it on every rank.

        Raises:
            ValueError: If no samples were accumulated on any rank.
        """
        return calibration_report_from_stats(
            self.gathered_stats(), self.n_bins, self.mce_variant, self.edge_rule, self.extras
        )

    def __repr__(self) -> str:
        return (
            f"CalibrationAccumulator(n_bins={self.n_bins}, mce_variant={self.mce_variant!r}, "
            f"n_samples={self.n_samples})"
        )
