"""Seeded tensor factories for sample inputs (float64, CPU)."""

from __future__ import annotations

import torch

F64 = torch.float64


def randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def rand(g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=g, dtype=F64)


def randint(g: torch.Generator, high: int, *shape: int, low: int = 0) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=g, dtype=torch.int64)


def signs(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random ±1 targets (float64)."""
    return randint(g, 2, *shape).to(F64) * 2 - 1


def probs(g: torch.Generator, *shape: int, dim: int = 1) -> torch.Tensor:
    """Random probability vectors along ``dim``."""
    return torch.softmax(randn(g, *shape), dim=dim)


def positive(g: torch.Generator, *shape: int, low: float = 0.5, high: float = 2.0) -> torch.Tensor:
    return rand(g, *shape, low=low, high=high)


def with_ignored(target: torch.Tensor, g: torch.Generator, ignore_index: int, frac: float = 0.3):
    """A copy of an index target with about ``frac`` of the positions set to ``ignore_index``."""
    mask = torch.rand(target.shape, generator=g) < frac
    return torch.where(mask, torch.full_like(target, ignore_index), target)
