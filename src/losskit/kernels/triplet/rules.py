"""Which batch-hard mining calls the Triton kernel takes, and its entry point.

Importable without ``triton``: the launcher is imported only when the kernel is about to run.
The PyTorch mining (the ``formula`` backend) is :func:`losskit.metric.miners.batch_hard_triplets`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..dispatch import dtype_problem, first_problem

# The metrics the kernel mines on: squared Euclidean distances, of L2-normalised rows for cosine.
KERNEL_METRICS = ("euclidean", "squared_euclidean", "cosine")


def batch_hard_refuses(
    embeddings: torch.Tensor, labels: torch.Tensor, metric: str, p: float
) -> str | None:
    """Why the kernel cannot mine this (validated) batch, or ``None``."""
    return first_problem(
        dtype_problem("embeddings", embeddings),
        None if metric in KERNEL_METRICS else f"metric {metric!r} is not one of {KERNEL_METRICS}",
        None if embeddings.dim() == 2 else "embeddings must be (B, D)",
        None if embeddings.dim() != 2 or embeddings.shape[1] > 0 else "zero-width embeddings",
    )


def batch_hard_kernel(
    embeddings: torch.Tensor, labels: torch.Tensor, metric: str, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardest positive and negative index per anchor (``-1`` where there is none).

    ``cosine`` mines on the L2-normalised embeddings with unit norms assumed (``2 - 2 cos``: the
    order of cosine distance, also for a zero embedding, whose cosine distance is 1 to every
    other).
    """
    from .function import triton_batch_hard_mine

    x = embeddings.detach()
    if metric == "cosine":
        x = F.normalize(x.float(), dim=1)
    return triton_batch_hard_mine(x, labels, unit_norms=metric == "cosine")
