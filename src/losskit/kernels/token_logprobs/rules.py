"""Which calls of :func:`losskit.lm.token_logprobs` the kernel takes, and its entry point.

Importable without ``triton``: the launcher is imported only when the kernel is about to run.
"""

from __future__ import annotations

import torch

from ..dispatch import dtype_problem, first_problem


def token_logprobs_refuses(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    y: torch.Tensor,
    keep: torch.Tensor,
    opts: tuple,
) -> str | None:
    """Why the kernel cannot take this (validated) call, or ``None``."""
    return first_problem(
        dtype_problem("hidden_states", x),
        "zero vocabulary entries" if w.shape[0] == 0 else None,
    )


def token_logprobs_kernel(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    y: torch.Tensor,
    keep: torch.Tensor,
    opts: tuple,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`losskit.lm.token_logprobs` on ``(N, H)`` rows by the kernel."""
    from .function import TokenLogprobsKernelFunction

    return TokenLogprobsKernelFunction.apply(x, w, b, y, keep, opts)
