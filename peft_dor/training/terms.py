"""The named parts of one training forward's objective (``CE + method losses + λ·DOR``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..dor.regularizer import OutlierDraw


@dataclass
class LossTerms:
    """The named parts of one forward's training objective.

    Attributes:
        outputs: the model output (``PromptClassifierOutput``).
        ce: cross-entropy of the class logits (``output.loss``).
        method: the method's own losses, already weighted (``output.losses``, e.g. ``{"kg": ...}``).
        dor: the unweighted DOR loss ``1 - mean cos`` (``None`` without DOR or outside training).
        dor_weight: λ.
        draw: the outliers of this forward.
    """

    outputs: Any
    ce: torch.Tensor | None
    method: dict[str, torch.Tensor] = field(default_factory=dict)
    dor: torch.Tensor | None = None
    dor_weight: float = 0.0
    draw: OutlierDraw | None = None

    def total(self, exclude: tuple[str, ...] = ()) -> torch.Tensor:
        """``ce + sum(method losses not in exclude) + dor_weight * dor``."""
        if self.ce is None:
            raise ValueError(
                "The batch has no `labels`, so there is no cross-entropy to train on. Make the collator return "
                "'labels' and set TrainingArguments(label_names=['labels'])."
            )
        loss = self.ce
        for name, value in self.method.items():
            if name not in exclude:
                loss = loss + value
        if self.dor is not None:
            loss = loss + self.dor_weight * self.dor
        return loss

    def logs(self) -> dict[str, torch.Tensor]:
        """``loss_ce``, ``loss_<name>`` per method loss and ``loss_dor`` (unweighted), detached."""
        values = {} if self.ce is None else {"loss_ce": self.ce}
        values.update({f"loss_{name}": value for name, value in self.method.items()})
        if self.dor is not None:
            values["loss_dor"] = self.dor
        return {name: value.detach().float() for name, value in values.items()}
