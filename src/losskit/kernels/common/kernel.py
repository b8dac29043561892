"""Triton kernels shared by several losses."""

import triton
import triton.language as tl


@triton.jit
def scale_by_upstream_kernel(G, n, GO, BLOCK: tl.constexpr):
    """``G *= GO[0]`` in place, skipping all memory traffic when the upstream gradient is 1.

    The gradient of a mean/sum loss is written in the forward; the backward only needs to scale it
    by the incoming scalar gradient. Reading that scalar on the device (not with ``.item()``) keeps
    the backward free of host synchronisation, and the masked no-op costs nothing when it is 1.
    """
    go = tl.load(GO).to(tl.float32)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    # Nothing to do when go == 1: shrink the range to empty (a scalar select, no branch).
    n_eff = tl.where(go != 1.0, n, 0)
    mask = offs < n_eff
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(G + offs, (g * go).to(G.dtype.element_ty), mask=mask)


@triton.jit
def store_elementwise_result(
    OUT,
    G,
    GO,
    pid,
    offs,
    mask,
    loss,
    grad,
    grad_scale,
    LOSS: tl.constexpr,
    REDUCE: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
):
    """The epilogue of the one-pass element-wise kernels (binary losses, KL).

    ``LOSS``: store the block's partial sum (``REDUCE``) or each element's loss. ``GRAD``: store the
    gradient, scaled per element by the upstream gradient ``GO`` (``ROW_SCALE``, the backward of
    ``reduction="none"``) or by the scalar ``grad_scale`` (1/N or 1, written in the forward).
    """
    if LOSS:
        if REDUCE:
            tl.store(OUT + pid, tl.sum(tl.where(mask, loss, 0.0), 0))
        else:
            tl.store(OUT + offs, loss.to(OUT.dtype.element_ty), mask=mask)
    if GRAD:
        if ROW_SCALE:
            grad = grad * tl.load(GO + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            grad = grad * grad_scale
        tl.store(G + offs, grad.to(G.dtype.element_ty), mask=mask)
