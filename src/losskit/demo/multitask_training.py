"""Part 2 of the demo: one trunk, a digit head and an ink-mass head, under three weightings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classification import cross_entropy
from ..focal import softmax_focal_loss
from ..multitask import DynamicTaskPrioritization, SumWeighting, UncertaintyWeighting
from ..regression import mse_loss
from .data import Split
from .evaluation import accuracy, rmse

TASKS = ("digit", "ink")
STRATEGIES = ("equal", "uncertainty", "dtp+focal")


class TwoHeadNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.digit = nn.Linear(32, 10)
        self.ink = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.digit(h), self.ink(h).squeeze(1)


@dataclass
class MultitaskResult:
    strategy: str
    accuracy: float
    ink_rmse: float
    epoch_losses: list[float]
    weights: np.ndarray  # (epochs, tasks)


def _weighting(strategy: str) -> nn.Module:
    if strategy == "equal":
        return SumWeighting(2, task_names=TASKS)
    if strategy == "uncertainty":
        return UncertaintyWeighting({"digit": "classification", "ink": "regression"})
    # DTP (Guo et al. 2018): KPI-driven task weights, focal loss inside the classification task.
    return DynamicTaskPrioritization(2, gamma=1.0, alpha=0.2, task_names=TASKS)


def train_multitask(
    strategy: str,
    train: Split,
    test: Split,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
    batch_size: int = 64,
    on_epoch: Callable[[int, float], None] = lambda epoch, loss: None,
) -> MultitaskResult:
    torch.manual_seed(seed)
    net = TwoHeadNet().to(device)
    weighting = _weighting(strategy).to(device)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=3e-3)
    x, y, ink = train.x.to(device), train.labels.to(device), train.ink.to(device)
    g = torch.Generator().manual_seed(seed)
    epoch_losses, weights = [], []
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=g).to(device)
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            logits, ink_pred = net(x[idx])
            if strategy == "dtp+focal":
                digit_loss = softmax_focal_loss(logits, y[idx], gamma=2.0)
            else:
                digit_loss = cross_entropy(logits, y[idx])
            ink_loss = mse_loss(ink_pred, ink[idx])
            loss = weighting({"digit": digit_loss, "ink": ink_loss})
            opt.zero_grad()
            loss.backward()
            opt.step()
            if strategy == "dtp+focal":
                with torch.no_grad():  # KPIs in [0, 1]: batch accuracy, and R² clipped at 0
                    kpi_ink = (1.0 - F.mse_loss(ink_pred, ink[idx]) / ink[idx].var()).clamp(0, 1)
                    weighting.update_kpis([accuracy(logits, y[idx]), float(kpi_ink)])
            total += loss.item() * len(idx)
        epoch_losses.append(total / len(y))
        weights.append(weighting.weights.cpu().numpy().copy())
        on_epoch(epoch, epoch_losses[-1])
    net.eval()
    with torch.no_grad():
        logits, ink_pred = net(test.x.to(device))
    return MultitaskResult(
        strategy=strategy,
        accuracy=accuracy(logits, test.labels.to(device)),
        ink_rmse=rmse(ink_pred, test.ink.to(device)),
        epoch_losses=epoch_losses,
        weights=np.stack(weights),
    )
