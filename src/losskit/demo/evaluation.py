"""Retrieval and regression metrics of the demo."""

from __future__ import annotations

import torch


def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose nearest neighbour (excluding itself) has the same label."""
    d = torch.cdist(embeddings, embeddings)
    d.fill_diagonal_(float("inf"))
    nearest = d.argmin(dim=1)
    return float((labels[nearest] == labels).float().mean())


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((pred - target) ** 2)))
