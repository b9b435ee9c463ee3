"""Shared fixtures: tiny hand-made models and model-state snapshots."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class OneConv(nn.Module):
    """captum's BasicModel_ConvNet_One_Conv: known weights, hand-checkable outputs."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, 1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.fc1 = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.ones(2, 1, 3, 3))
            self.conv1.bias.copy_(torch.tensor([-50.0, -75.0]))
            self.fc1.weight.copy_(torch.cat([torch.ones(4, 5), -torch.ones(4, 3)], dim=1))
            self.fc1.bias.zero_()
        self.relu2 = nn.ReLU(inplace=inplace)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        return self.relu2(self.fc1(x.view(-1, 8)))


class GapNet(nn.Module):
    """ResNet-style head: conv features, global average pooling, one linear layer."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return float(((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).detach())


def snapshot(model: nn.Module) -> dict:
    """Everything explain() must leave as it found it."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad) for n, p in model.named_parameters()],
        "hooks": [
            (
                n,
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(m._backward_pre_hooks),
                type(m).__name__,
            )
            for n, m in model.named_modules()
        ],
        "modules": [(n, id(m)) for n, m in model.named_modules()],
    }


def assert_same_snapshot(a: dict, b: dict) -> None:
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert a["hooks"] == b["hooks"]
    assert a["modules"] == b["modules"]
    assert [g is None for _, g in a["grads"]] == [g is None for _, g in b["grads"]]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_conv():
    return OneConv()


@pytest.fixture
def gap_net():
    return GapNet().eval()
