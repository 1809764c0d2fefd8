"""Training: :class:`DORTrainer` and the protocol's optimisers and warm-up + cosine schedule.

Example:
    ```python
    from peft_dor.training import DORTrainer, build_protocol_scheduler, protocol_learning_rates
    ```
"""

from .saving import save_pretrained_atomically
from .schedule import (
    OPTIMIZER_DEFAULTS,
    SCHEDULERS,
    build_optimizer,
    build_protocol_scheduler,
    build_scheduler,
    protocol_learning_rates,
    protocol_lr,
    protocol_lr_lambda,
)
from .terms import LossTerms
from .trainer import DORTrainer, accuracy_compute_metrics, default_compute_metrics

__all__ = [
    "OPTIMIZER_DEFAULTS",
    "SCHEDULERS",
    "DORTrainer",
    "LossTerms",
    "accuracy_compute_metrics",
    "build_optimizer",
    "build_protocol_scheduler",
    "build_scheduler",
    "default_compute_metrics",
    "protocol_learning_rates",
    "protocol_lr",
    "protocol_lr_lambda",
    "save_pretrained_atomically",
]
