"""The protocol's optimisers and the warm-up + per-epoch cosine schedule (PROTOCOL.md §8)."""

from __future__ import annotations

import pytest
import torch

from peft_dor.training import (
    build_optimizer,
    build_protocol_scheduler,
    build_scheduler,
    protocol_learning_rates,
    protocol_lr_lambda,
)


@pytest.mark.parametrize(
    ("base_lr", "epochs", "expected"),
    [
        (0.0035, 5, [1e-5, 0.0035, 0.003166, 0.002291, 0.001209]),
        (0.002, 10, [1e-5, 0.002, 0.001951, 0.001809, 0.001588, 0.001309, 0.001, 0.000691, 0.000412, 0.000191]),
    ],
)
def test_protocol_test_vectors(base_lr, epochs, expected):
    assert protocol_learning_rates(base_lr, epochs) == pytest.approx(expected, abs=1e-6)


def test_scheduler_steps_per_optimizer_step_and_changes_per_epoch():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 0.0035}, {"params": params[1:], "lr": 0.007}])
    scheduler = build_protocol_scheduler(optimizer, steps_per_epoch=3, num_epochs=5)
    seen = []
    for _ in range(15):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    per_epoch = [seen[e * 3] for e in range(5)]
    assert all(seen[e * 3] == seen[e * 3 + 2] for e in range(5))  # constant within an epoch
    # the warm-up rate is absolute: 1e-5 for both groups, whatever their base rate
    assert per_epoch[0] == pytest.approx([1e-5, 1e-5])
    assert [lr[0] for lr in per_epoch] == pytest.approx(protocol_learning_rates(0.0035, 5), abs=1e-9)
    assert [lr[1] for lr in per_epoch] == pytest.approx(protocol_learning_rates(0.007, 5), abs=1e-9)


def test_lambda_and_registry_errors():
    assert protocol_lr_lambda(0.002, steps_per_epoch=4, num_epochs=10)(3) == pytest.approx(1e-5 / 0.002)
    assert protocol_lr_lambda(0.002, steps_per_epoch=4, num_epochs=10)(4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="base learning rate"):
        protocol_lr_lambda(0.0, 4, 10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        protocol_lr_lambda(0.1, 0, 10)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="protocol"):
        build_scheduler("linear", optimizer, 1, 1)


def test_optimizers_by_name():
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    trained = torch.nn.Parameter(torch.zeros(2))
    sgd = build_optimizer("sgd", [frozen, trained], lr=0.002)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["params"] == [trained]
    group = sgd.param_groups[0]
    assert (group["momentum"], group["weight_decay"], group["dampening"], group["nesterov"]) == (0.9, 5e-4, 0, False)
    adam = build_optimizer("Adam", [trained], lr=0.002, weight_decay=0.0)
    assert type(adam) is torch.optim.Adam  # coupled L2, not AdamW
    assert adam.param_groups[0]["eps"] == 1e-3 and adam.param_groups[0]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="sgd"):
        build_optimizer("lion", [trained], lr=0.1)
    with pytest.raises(ValueError, match="trainable"):
        build_optimizer("sgd", [frozen], lr=0.1)
