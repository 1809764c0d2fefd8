"""PromptSRC: IVLP's prompts with self-regulating losses and Gaussian prompt aggregation (GPA) over epochs.

GPA is a Trainer callback (``gpa.py``); the method spec declares it, so ``DORTrainer`` on a PromptSRC model aggregates
the prompts without being asked. Its two options are the ones a command line exposes (:class:`PromptSRCTrainingOptions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...registry import MethodSpec, register_method
from .config import PROMPTSRC_TEMPLATES, PromptSRCConfig
from .model import PromptSRCModel, template_ensemble_features


@dataclass
class PromptSRCTrainingOptions:
    """PromptSRC's training options outside its config: where the Gaussian of prompt aggregation sits."""

    gpa_mean: float = field(default=15.0, metadata={"help": "PromptSRC only: mean epoch of prompt aggregation."})
    gpa_std: float = field(default=1.0, metadata={"help": "PromptSRC only: std of prompt aggregation."})

    def __post_init__(self) -> None:
        if not self.gpa_std > 0:
            raise ValueError(f"gpa_std={self.gpa_std}: must be > 0 (the epochs' Gaussian width); PromptSRC uses 1.")


def training_callbacks(options: PromptSRCTrainingOptions) -> list:
    """GPA with ``options``' mean and std (imported here: ``transformers``' callback module loads on first use)."""
    from .gpa import GPACallback

    return [GPACallback(mean=options.gpa_mean, std=options.gpa_std)]


register_method(
    MethodSpec(
        "PROMPTSRC",
        PromptSRCConfig,
        PromptSRCModel,
        "PromptSRC",
        callbacks=training_callbacks,
        options=PromptSRCTrainingOptions,
    )
)

__all__ = [
    "PROMPTSRC_TEMPLATES",
    "PromptSRCConfig",
    "PromptSRCModel",
    "PromptSRCTrainingOptions",
    "template_ensemble_features",
    "training_callbacks",
]
