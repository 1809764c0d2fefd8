"""Fixtures for the calibration-metric tests: seeded random logits and small hand-worked examples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch


@dataclass
class HandFixture:
    """Probabilities and labels whose per-bin numbers are worked out by hand in the docstring of the fixture."""

    probs: np.ndarray
    labels: np.ndarray
    n_bins: int


def _rows(confidences: list[float], correct: list[bool], n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    # Row i puts `c` on class 0 and spreads the rest evenly, so class 0 is the prediction whenever c > 1/C;
    # label 0 makes the sample correct, label 1 wrong.
    probs = np.array([[c] + [(1.0 - c) / (n_classes - 1)] * (n_classes - 1) for c in confidences])
    labels = np.array([0 if ok else 1 for ok in correct])
    return probs, labels


@pytest.fixture
def hand5() -> HandFixture:
    """Ten samples, 5 equal-width bins of width 0.2, no confidence on an edge.

    ========  =====================================  =====  ==========  =========  ==============
    bin       confidences (c = correct, w = wrong)   count  accuracy    mean conf  |acc - conf|
    ========  =====================================  =====  ==========  =========  ==============
    [0, .2)   (none)                                 0      -           -          -
    [.2, .4)  .35c                                   1      1           .35        .65
    [.4, .6)  .45w .55c                              2      1/2         .50        0
    [.6, .8)  .65c .70w .75c                         3      2/3         .70        1/30
    [.8, 1]   .85c .90c .95w .99w                    4      1/2         .9225      .4225
    ========  =====================================  =====  ==========  =========  ==============

    ECE = (1 * .65 + 2 * 0 + 3 / 30 + 4 * .4225) / 10 = .244; MCE = .65; count-weighted MCE = .169;
    RMSCE = sqrt((.4225 + 3 / 900 + 4 * .4225^2) / 10) = .33761792; netcal's average CE = (.65 + 0 + 1/30 + .4225) / 4.
    Adaptive, 2 bins: median .725; {.35 .45 .55 .65 .70}: acc .6, conf .54; {.75 .85 .90 .95 .99}: acc .6, conf .888;
    ACE = .5 * .06 + .5 * .288 = .174.
    """
    conf = [0.35, 0.45, 0.55, 0.65, 0.70, 0.75, 0.85, 0.90, 0.95, 0.99]
    correct = [True, False, True, True, False, True, True, True, False, False]
    probs, labels = _rows(conf, correct)
    return HandFixture(probs, labels, 5)


@pytest.fixture
def edge4() -> HandFixture:
    """Confidences exactly on bin edges (4 bins: edges .25 .5 .75 1, all exact in binary floating point).

    rows: [.5, .5] y=0 (conf .5, correct), [.25, .75] y=1 (.75, correct), [1, 0] y=1 (1.0, wrong), [0, 1] y=0 (1.0,
    wrong). peft_dor: .5 -> bin [.5, .75); .75 and both 1.0 -> closed last bin [.75, 1] (acc 1/3, conf 11/12).
    ECE = (1 * .5 + 3 * 7/12) / 4 = .5625.
    """
    probs = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    return HandFixture(probs, labels, 4)


@pytest.fixture
def random_logits():
    """Factory for seeded float64 torch logits ``(n, c)`` (scaled like CLIP's, sharper than calibrated) and labels."""

    def make(n: int = 1000, c: int = 7, seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
        # Labels agree with the arg-max more often than chance, so accuracy and calibration are non-trivial.
        labels = torch.where(
            torch.rand(n, generator=g) < 0.6, logits.argmax(1), torch.randint(0, c, (n,), generator=g)
        )
        return logits, labels

    return make


@pytest.fixture
def calibrated_logits():
    """Factory for logits whose labels are drawn from their own softmax (calibrated by construction)."""

    def make(n: int = 4000, c: int = 5, seed: int = 0, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
        labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
        return logits, labels

    return make
