"""One chunk of :func:`losskit.linear_cross_entropy` by the fused cross-entropy kernel.

The chunk's logits (in the matmul dtype: bfloat16 under autocast) are read once by the kernel,
which computes the softmax statistics in float32 (soft-capped when asked), the per-row loss and
z-loss, and writes the gradient over the logits themselves; :mod:`losskit._chunked_linear` then
multiplies it into the gradients of the input, the weight (accumulated in float32) and the bias.
``logit_scale`` multiplies the logits in place before the kernel reads them.
"""

from __future__ import annotations

import torch

from ..cross_entropy.function import _launch


def chunk_kernel(
    logits: torch.Tensor,
    target: torch.Tensor,
    cw: torch.Tensor | None,
    w_sum: torch.Tensor,
    a_ce: torch.Tensor,
    a_z: torch.Tensor,
    o,
    grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gradient or logits, ce rows, z rows)``; the gradient is written over ``logits``.

    ``a_ce``/``a_z``: the gradient scales of the two terms, scalars (a reduced loss) or one per
    row (the upstream gradient of ``reduction="none"``, the same for both terms).
    """
    if o.logit_scale != 1.0:
        logits.mul_(o.logit_scale)
    rows = logits.shape[0]
    f32 = {"device": logits.device, "dtype": torch.float32}
    loss = torch.empty(rows, **f32)
    z = torch.empty(rows, **f32) if o.z_scale else loss
    lse = torch.empty(rows, 2, **f32)
    row_scale = a_ce.dim() > 0
    if row_scale:
        zero = torch.zeros((), **f32)
        consts = torch.stack([zero, zero, w_sum.float()])
        go = a_ce.float().contiguous()
    else:
        consts = torch.stack([a_ce.float(), a_z.float(), w_sum.float()])
        go = None
    x3 = logits.unsqueeze(-1)
    _launch(
        x3, x3 if grad else None, target.contiguous(), None if cw is None else cw.float(),
        consts, go, loss, z, lse,
        ignore_index=o.ignore_index, eps=o.eps, z_scale=o.z_scale, cap=o.softcap,
        stats=True, row_scale=row_scale,
    )  # fmt: skip
    zl = z if o.z_scale else torch.zeros_like(loss)
    return logits, loss, zl
