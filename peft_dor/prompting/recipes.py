"""Published training settings per method, so scripts and docs read them from one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingRecipe:
    """One source's training settings for a method (``CoCoOpConfig.training_defaults["original"]`` and so on).

    What every method shares is the protocol's (docs/protocol.md): SGD momentum 0.9, weight decay 5e-4 (coupled L2 for
    Adam too), one warm-up epoch at a constant 1e-5, then cosine annealing stepped per epoch.

    Example:
        ```python
        recipe = peft_dor.TCPConfig.training_defaults["original"]
        TrainingArguments(per_device_train_batch_size=recipe.batch_size, num_train_epochs=recipe.epochs, ...)
        ```
    """

    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    adam_epsilon: float | None = None
    note: str = ""
