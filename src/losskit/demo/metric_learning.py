"""Part 1 of the demo: embeddings trained with the batch-hard triplet loss on P×K batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..metric import PKSampler, triplet_loss
from .data import Split
from .evaluation import recall_at_1


def embedding_net(dim: int = 32) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, dim)
    )


def _normalised(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Unit-length embeddings keep the margin meaningful whatever the network's scale.
    return nn.functional.normalize(net(x), dim=1)


@dataclass
class MetricResult:
    recall_trained: float
    recall_untrained: float
    recall_pixels: float
    epoch_losses: list[float]
    test_embeddings: torch.Tensor


def train_embeddings(
    train: Split,
    test: Split,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
    margin: float = 0.2,
    on_epoch: Callable[[int, float], None] = lambda epoch, loss: None,
) -> MetricResult:
    torch.manual_seed(seed)
    net = embedding_net().to(device)
    x_test = test.x.to(device)
    with torch.no_grad():
        recall_untrained = recall_at_1(_normalised(net, x_test), test.labels.to(device))
    sampler = PKSampler(train.labels, p=10, k=8, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x_train, y_train = train.x.to(device), train.labels.to(device)
    epoch_losses = []
    for epoch in range(epochs):
        total, batches = 0.0, 0
        for batch in sampler:
            idx = torch.as_tensor(batch, device=device)
            loss = triplet_loss(_normalised(net, x_train[idx]), y_train[idx], margin=margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        epoch_losses.append(total / max(batches, 1))
        on_epoch(epoch, epoch_losses[-1])
    net.eval()
    with torch.no_grad():
        emb = _normalised(net, x_test)
    return MetricResult(
        recall_trained=recall_at_1(emb, test.labels.to(device)),
        recall_untrained=recall_untrained,
        recall_pixels=recall_at_1(test.x, test.labels),
        epoch_losses=epoch_losses,
        test_embeddings=emb.cpu(),
    )
