"""Launcher of the batch-hard mining kernel."""

from __future__ import annotations

import torch
import triton

from .kernel import batch_hard_kernel

# Measured on an H100, B=4096, D=512 (benchmarks/RESULTS.md): 32x128x32 tiles with "tf32x3"
# products 0.63 ms (indices identical to float64 mining there), "ieee" 1.71 ms.
BLOCK_M = 32
BLOCK_N = 128
BLOCK_D = 32
PRECISION = "tf32x3"
NUM_WARPS = 4


def triton_batch_hard_mine(
    embeddings: torch.Tensor, labels: torch.Tensor, unit_norms: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardest positive and negative index of each anchor under squared Euclidean distance.

    ``embeddings`` ``(B, D)`` (float32/16/bf16), ``labels`` ``(B,)`` integer. Returns two int64
    tensors ``(B,)``; ``-1`` where an anchor has no positive (or no negative). ``unit_norms``
    takes every ``|a|^2`` as 1, so the distance is ``2 - 2 a.b``: with L2-normalised rows, twice
    the cosine distance, a zero row (normalised to 0) included. ``D = 0`` is refused by
    :func:`losskit.kernels.triplet.rules.batch_hard_refuses` (the PyTorch mining takes it).
    """
    b, d = embeddings.shape
    pos = torch.full((b,), -1, device=embeddings.device, dtype=torch.int32)
    neg = torch.full_like(pos, -1)
    if b and d:
        if unit_norms:
            sqn = torch.ones(b, device=embeddings.device, dtype=torch.float32)
        else:
            sqn = embeddings.float().pow(2).sum(1).contiguous()
        lab = labels.to(torch.int64).contiguous()
        block_d = max(16, min(BLOCK_D, triton.next_power_of_2(d)))
        batch_hard_kernel[(triton.cdiv(b, BLOCK_M),)](
            embeddings, *embeddings.stride(), sqn, lab, pos, neg, b, d,
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=PRECISION, num_warps=NUM_WARPS,
        )  # fmt: skip
    return pos.long(), neg.long()
