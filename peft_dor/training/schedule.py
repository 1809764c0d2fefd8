"""The protocol's optimisers and learning-rate schedule (Dassl's, used by every original prompt-tuning method).

* ``"sgd"``: SGD with momentum 0.9 (no dampening, no Nesterov) and weight decay 5e-4 on every trained tensor.
* ``"adam"``: ``torch.optim.Adam`` (coupled L2 weight decay, not AdamW), betas (0.9, 0.999), eps 1e-3 (TCP's patch
  against fp16 NaNs).
* ``"protocol"`` schedule: one warm-up epoch at a constant 1e-5, then cosine annealing per epoch with
  ``T_max = num_epochs``: for 0-based epoch ``e >= 1``, ``lr = 0.5 * base_lr * (1 + cos(pi * (e - 1) / num_epochs))``.
  The last epoch does not reach 0. Hugging Face's Trainer steps schedulers per optimiser step, so the factor is
  computed from ``epoch = step // steps_per_epoch``.

Example:
    ```python
    from peft_dor.training import build_optimizer, build_protocol_scheduler, protocol_learning_rates

    optimizer = build_optimizer("sgd", model.parameters(), lr=0.002)
    scheduler = build_protocol_scheduler(optimizer, steps_per_epoch=len(loader), num_epochs=10)
    protocol_learning_rates(0.0035, 5)  # [1e-05, 0.0035, 0.003166, 0.002291, 0.001209] (rounded)
    ```
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

#: the protocol's optimiser defaults by name (docs/protocol.md); keyword arguments override them
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 5e-4},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-3, "weight_decay": 5e-4},
}
_OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def build_optimizer(name: str, params: Iterable, lr: float, **overrides: Any) -> torch.optim.Optimizer:
    """The protocol's optimiser ``name`` (``"sgd"`` or ``"adam"``) over ``params`` with learning rate ``lr``.

    Weight decay applies to every tensor, prompts included, as in Dassl. ``overrides`` replace the defaults in
    :data:`OPTIMIZER_DEFAULTS` (e.g. ``weight_decay=0.0``).
    """
    key = name.lower()
    if key not in _OPTIMIZER_CLASSES:
        raise ValueError(f"Unknown optimizer name {name!r}; choose one of {sorted(_OPTIMIZER_CLASSES)}.")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters to optimise; is the adapter active and trainable?")
    return _OPTIMIZER_CLASSES[key](params, lr=lr, **{**OPTIMIZER_DEFAULTS[key], **overrides})


def _check_schedule(num_epochs: int, warmup_epochs: int) -> None:
    if num_epochs < 1:
        raise ValueError(f"`num_epochs` must be at least 1; got {num_epochs}.")
    if warmup_epochs < 0:
        raise ValueError(f"`warmup_epochs` must be >= 0; got {warmup_epochs}.")


def protocol_lr(epoch: int, base_lr: float, num_epochs: int, warmup_lr: float = 1e-5, warmup_epochs: int = 1) -> float:
    """The learning rate of 0-based ``epoch``: ``warmup_lr`` during warm-up, then per-epoch cosine (Dassl)."""
    _check_schedule(num_epochs, warmup_epochs)
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / num_epochs))


def protocol_learning_rates(
    base_lr: float, num_epochs: int, warmup_lr: float = 1e-5, warmup_epochs: int = 1
) -> list[float]:
    """The per-epoch learning rates of a whole run, e.g. ``protocol_learning_rates(0.002, 10)``."""
    return [protocol_lr(e, base_lr, num_epochs, warmup_lr, warmup_epochs) for e in range(num_epochs)]


def protocol_lr_lambda(
    base_lr: float, steps_per_epoch: int, num_epochs: int, warmup_lr: float = 1e-5, warmup_epochs: int = 1
) -> Callable[[int], float]:
    """A ``LambdaLR`` factor for one parameter group: ``protocol_lr(step // steps_per_epoch) / base_lr``.

    The warm-up rate is absolute (1e-5 whatever ``base_lr`` is), so the factor divides by ``base_lr``.
    """
    _check_schedule(num_epochs, warmup_epochs)
    if steps_per_epoch < 1:
        raise ValueError(f"`steps_per_epoch` must be at least 1; got {steps_per_epoch}.")
    if base_lr <= 0:
        raise ValueError(f"The protocol schedule needs a positive base learning rate; got {base_lr}.")

    def factor(step: int) -> float:
        return protocol_lr(step // steps_per_epoch, base_lr, num_epochs, warmup_lr, warmup_epochs) / base_lr

    return factor


def build_protocol_scheduler(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    num_epochs: int,
    warmup_lr: float = 1e-5,
    warmup_epochs: int = 1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + per-epoch cosine as a ``LambdaLR`` stepped once per optimiser step (one factor per param group).

    Args:
        optimizer: the optimiser; each group's current ``lr`` is its base rate.
        steps_per_epoch: optimiser steps per epoch (batches / gradient-accumulation steps, rounded up).
        num_epochs: ``MAX_EPOCH``, the cosine's ``T_max``.
        warmup_lr: constant learning rate of the warm-up epochs (absolute).
        warmup_epochs: number of warm-up epochs (1 in the protocol).
    """
    lambdas = [
        protocol_lr_lambda(group.get("initial_lr", group["lr"]), steps_per_epoch, num_epochs, warmup_lr, warmup_epochs)
        for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


#: schedules available by name to :class:`~peft_dor.DORTrainer` (``scheduler_name=``)
SCHEDULERS: dict[str, Callable[..., torch.optim.lr_scheduler.LRScheduler]] = {"protocol": build_protocol_scheduler}


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, num_epochs: int, **kwargs):
    """The schedule registered under ``name`` in :data:`SCHEDULERS` (``"protocol"``)."""
    if name not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler name {name!r}; choose one of {sorted(SCHEDULERS)}.")
    return SCHEDULERS[name](optimizer, steps_per_epoch=steps_per_epoch, num_epochs=num_epochs, **kwargs)


def check_optimizer_settings(optimizer_name, optimizer_kwargs, scheduler_name, scheduler_kwargs) -> None:
    """Fail in ``DORTrainer.__init__``, not at the first step, on unknown optimiser or schedule settings."""
    if optimizer_name is not None and (
        not isinstance(optimizer_name, str) or optimizer_name.lower() not in _OPTIMIZER_CLASSES
    ):
        raise ValueError(
            f"`optimizer_name` must be one of {sorted(_OPTIMIZER_CLASSES)} or None (args.optim); got {optimizer_name!r}."
        )
    for argument, value in (("optimizer_kwargs", optimizer_kwargs), ("scheduler_kwargs", scheduler_kwargs)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"`{argument}` must be a dict or None; got {type(value).__name__}.")
    if optimizer_name is not None and optimizer_kwargs:
        cls = _OPTIMIZER_CLASSES[optimizer_name.lower()]
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params", "lr"}
        unknown = sorted(set(optimizer_kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"`optimizer_kwargs` has options {unknown} that {cls.__name__} does not take; it takes "
                f"{sorted(accepted)} (defaults: {OPTIMIZER_DEFAULTS[optimizer_name.lower()]})."
            )
    if scheduler_name is not None and scheduler_name not in SCHEDULERS:
        raise ValueError(f"`scheduler_name` must be one of {sorted(SCHEDULERS)} or None; got {scheduler_name!r}.")
    if optimizer_kwargs and optimizer_name is None:
        raise ValueError("`optimizer_kwargs` only apply with optimizer_name='sgd' or 'adam'; set it or drop them.")
    if scheduler_kwargs and scheduler_name is None:
        raise ValueError("`scheduler_kwargs` only apply with scheduler_name='protocol'; set it or drop them.")
