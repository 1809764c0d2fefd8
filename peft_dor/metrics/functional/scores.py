# Copyright 2025 The peft-dor developers. Licensed under the Apache License, Version 2.0.
"""Proper scores and accuracy: mean negative log-likelihood, multiclass Brier score, top-1 accuracy."""

from __future__ import annotations

from .inputs import ArrayLike, as_labels, validated_preds
from .top_label import top_label, top_label_columns, top_label_stats

__all__ = ["accuracy", "brier_score", "negative_log_likelihood"]


def negative_log_likelihood(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> float:
    """Mean negative log-likelihood of the true class, ``-(1/N) sum_i log p_{i, y_i}``.

    Logits go through a float64 log-softmax (no ``log(softmax(x))`` underflow). Probabilities are clipped below at
    float64 ``eps`` as in scikit-learn's ``log_loss``, so a zero probability for the true class costs 36.04 nats
    rather than infinity.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        The NLL in nats, a Python float >= 0.

    Example:
        >>> round(negative_log_likelihood([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 4)
        0.3993
    """
    return float(top_label_stats(preds, labels, from_logits=from_logits).nll.mean())


def brier_score(
    preds: ArrayLike, labels: ArrayLike, *, normalize: bool = False, from_logits: bool | None = None
) -> float:
    """Multiclass Brier score ``(1/N) sum_i sum_c (p_ic - 1[y_i = c])^2`` (Brier, 1950).

    The sum over classes ranges over ``[0, 2]``. Some libraries divide by the number of classes ``C``
    (``normalize=True`` does that); compare like with like.

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        normalize: Divide by the number of classes.
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` to detect.

    Returns:
        A Python float in ``[0, 2]`` (``[0, 2 / C]`` when normalised).

    Example:
        >>> round(brier_score([[0.5, 0.5], [0.9, 0.1]], [0, 0]), 4)
        0.26
    """
    x, is_probs = validated_preds(preds, from_logits)
    y = as_labels(labels, *x.shape)
    brier = top_label_columns(x, is_probs, y)[3]
    score = float(brier.mean())
    return score / x.shape[1] if normalize else score


def accuracy(preds: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> float:
    """Top-1 accuracy, the fraction of samples whose arg-max class is the label.

    Ties in ``preds`` go to the lowest class index (NumPy's ``argmax``).

    Args:
        preds: Logits or probabilities of shape ``(N, C)``.
        labels: Integer class indices of shape ``(N,)``.
        from_logits: Accepted for symmetry; the arg-max does not depend on it.

    Returns:
        A Python float in ``[0, 1]``.

    Example:
        >>> accuracy([[0.5, 0.4], [0.1, 0.9]], [0, 0])
        0.5
    """
    return float(top_label(preds, labels, from_logits)[1].mean())
