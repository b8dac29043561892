"""Helpers of the kernel tests (a module with a name of its own, not ``conftest``)."""

from __future__ import annotations

import torch


def upstream(out: torch.Tensor, seed: int = 7) -> torch.Tensor:
    """A random upstream gradient, so ``reduction="none"`` checks a full vector-Jacobian product."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 7) -> list[torch.Tensor]:
    return list(torch.autograd.grad(out, inputs, upstream(out, seed), allow_unused=True))


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    torch.testing.assert_close(
        a.detach().double(), b.detach().double(), rtol=rtol, atol=atol, equal_nan=True
    )


TOL = {
    torch.float32: (1e-5, 1e-6),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
}
