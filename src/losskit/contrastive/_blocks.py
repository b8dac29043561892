"""Row losses over a similarity matrix computed block by block, the gradient by recomputation.

The matrix is :math:`S = s\\, X Y^\\top + b` (``X`` ``(n, D)`` rows, ``Y`` ``(m, D)`` columns, a
scalar scale ``s`` and bias ``b``); row ``i`` has its positive at column ``offset + i`` (or no
positive, ``offset = -1``: a block of another rank's columns). Two row losses:

* ``"softmax"``: :math:`\\ell_i = \\operatorname{LSE}_j S_{ij} - S_{i,o+i}` (CLIP, InfoNCE);
  ``both=True`` (a square matrix, ``offset = 0``) adds the column direction and returns
  :math:`\\tfrac12(\\text{row}_i + \\text{col}_i)` with
  :math:`\\text{col}_i = \\operatorname{LSE}_j S_{ji} - S_{ii}` — CLIP's symmetric loss on one
  matrix, each block computed once for both directions;
* ``"sigmoid"``: :math:`\\ell_i = \\sum_j \\operatorname{softplus}(S_{ij}) - S_{i,o+i}`
  :math:`= -\\sum_j \\log\\sigma(z_{ij} S_{ij})` with :math:`z = \\pm 1` (SigLIP).

:class:`RowBlocks` never holds more than ``chunk`` rows of ``S`` (a ``chunk × m`` block and a
few temporaries of its size): the forward keeps only the row (and column) log-sum-exp, the
backward recomputes each block and accumulates ``dX``, ``dY``, ``ds``, ``db``. It is first-order
only (no double backward) and is not a ``torch.func`` transform target; the unchunked path is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import first_order_only

__all__ = ["RowBlocks", "row_losses"]

_HINT = "call the loss with chunk_size=None for the plain autograd path"


def _logits(out: torch.Tensor, xs: torch.Tensor, y: torch.Tensor, bias) -> torch.Tensor:
    """One row block of ``S`` from the pre-scaled rows ``xs = scale * x``, written into ``out``."""
    torch.mm(xs, y.T, out=out)
    return out if bias is None else out.add_(bias)


def _softplus_rows(logits: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Row sums of ``softplus(S) = max(S, 0) + log1p(exp(-|S|))`` (``-log sigmoid(-S)``),
    overwriting ``logits`` and ``tmp``."""
    torch.abs(logits, out=tmp).neg_().exp_().log1p_()
    return logits.clamp_(min=0).add_(tmp).sum(1)


class RowBlocks(torch.autograd.Function):
    """Per-row losses ``(n,)`` of ``S = scale * x @ y.T + bias``, ``chunk`` rows at a time.

    Two ``chunk × m`` buffers, allocated once per pass and reused by every block (no allocator
    churn), and ``chunk × D`` row temporaries: besides the gradients themselves, nothing of
    size ``n × m`` or ``n × D`` is allocated.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, offset: int, kind: str, both: bool, chunk: int):
        # The blocks compute in the inputs' dtype (float32 for half inputs), autocast or not.
        with torch.autocast(x.device.type, enabled=False):
            return RowBlocks._forward(ctx, x, y, scale, bias, offset, kind, both, chunk)

    @staticmethod
    def _forward(ctx, x, y, scale, bias, offset, kind, both, chunk):
        n, m = x.shape[0], y.shape[0]
        out = x.new_empty(n)
        row_lse = x.new_empty(n) if kind == "softmax" else None
        if both:  # running column max and sum of exponentials, updated block after block
            col_max = x.new_full((m,), -torch.inf)
            col_sum = x.new_zeros(m)
        buf, tmp = x.new_empty(min(chunk, n), m), x.new_empty(min(chunk, n), m)
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            xs = x[i0:i1] * scale  # the scale folded into the rows, not into the block
            logits, t = _logits(buf[: i1 - i0], xs, y, bias), tmp[: i1 - i0]
            if kind == "softmax":
                row_max = logits.amax(1)
                row_max = torch.where(torch.isfinite(row_max), row_max, 0.0)
                rows = torch.sub(logits, row_max[:, None], out=t).exp_().sum(1)
                row_lse[i0:i1] = row_max + torch.log(rows)
                out[i0:i1] = row_lse[i0:i1]
                if both:
                    new_max = torch.maximum(col_max, logits.amax(0))
                    cols = torch.sub(logits, new_max, out=t).exp_().sum(0)
                    col_sum = col_sum * torch.exp(col_max - new_max) + cols
                    col_max = new_max
            else:
                out[i0:i1] = _softplus_rows(logits, t)
            if offset >= 0:  # minus the positive's logit S_{i,o+i}
                pos = (xs * y[offset + i0 : offset + i1]).sum(1)
                out[i0:i1] -= pos if bias is None else pos + bias
        col_lse = None
        if both:
            col_lse = col_max + torch.log(col_sum)
            # out holds row_lse_i - S_ii; the mean of the two directions is
            # (row_lse_i + col_lse_i) / 2 - S_ii.
            out = out + 0.5 * (col_lse - row_lse)
        ctx.save_for_backward(x, y, scale, bias, row_lse, col_lse)
        ctx.meta = (offset, kind, both, chunk)
        return out

    @staticmethod
    @first_order_only("a chunked contrastive loss", _HINT)
    def backward(ctx, grad):
        with torch.autocast(grad.device.type, enabled=False):
            return RowBlocks._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        x, y, scale, bias, row_lse, col_lse = ctx.saved_tensors
        offset, kind, both, chunk = ctx.meta
        n, m = x.shape[0], y.shape[0]
        grad = grad.to(x.dtype)
        dx = torch.empty_like(x)
        dy = torch.zeros_like(y)
        dscale = x.new_zeros(())
        dbias = x.new_zeros(())
        half = 0.5 if both else 1.0
        buf = x.new_empty(min(chunk, n), m)
        tmp = x.new_empty(min(chunk, n), m) if kind == "softmax" else None
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            xi, g = x[i0:i1], grad[i0:i1, None]
            xs = xi * scale
            logits = _logits(buf[: i1 - i0], xs, y, bias)
            if kind == "softmax":
                # d row_i / d S_ij = softmax_j(S_i.), d col_l / d S_kl = softmax_k(S_.l)
                dlogits = torch.sub(logits, row_lse[i0:i1, None], out=tmp[: i1 - i0])
                dlogits.exp_().mul_(half * g)
                if both:
                    dlogits += logits.sub_(col_lse[None, :]).exp_().mul_(half * grad[None, :])
            else:
                dlogits = logits.sigmoid_().mul_(g)
            if bias is not None:
                dbias += dlogits.sum()
            gy = dlogits @ y  # dS y: dx = scale dS y, and dscale = sum_i x_i . (dS y)_i
            dy.addmm_(dlogits.T, xs)
            if offset >= 0:  # the positive's -S_{i,o+i}: the directions subtract it once in all
                gy -= g * y[offset + i0 : offset + i1]
                dy[offset + i0 : offset + i1] -= g * xs
                if bias is not None:
                    dbias -= g.sum()
            dscale += torch.vdot(xi.reshape(-1), gy.reshape(-1))
            dx[i0:i1] = gy.mul_(scale)
        need = ctx.needs_input_grad
        return (
            dx if need[0] else None,
            dy if need[1] else None,
            dscale.reshape(scale.shape) if need[2] else None,
            dbias.reshape(bias.shape) if bias is not None and need[3] else None,
            None,
            None,
            None,
            None,
        )


def _plain_rows(x, y, scale, bias, offset, kind, both):
    """The same per-row losses with plain autograd on the whole ``(n, m)`` block."""
    # The scale folded into the rows and the bias into the product: one (n, m) tensor.
    xs = x * scale
    logits = xs @ y.T if bias is None else torch.addmm(bias, xs, y.T)
    n = x.shape[0]
    if kind == "softmax":
        lse = torch.logsumexp(logits, 1)
        if both:
            lse = 0.5 * (lse + torch.logsumexp(logits, 0))
    else:
        lse = -F.logsigmoid(-logits).sum(1)
    if offset < 0:
        return lse
    rows = torch.arange(n, device=x.device)
    return lse - logits[rows, rows + offset]


def row_losses(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor | None,
    offset: int,
    kind: str,
    both: bool = False,
    chunk: int | None = None,
) -> torch.Tensor:
    """Per-row losses ``(n,)`` (see the module docstring); chunked when ``chunk`` is given."""
    if chunk is None:
        return _plain_rows(x, y, scale, bias, offset, kind, both)
    return RowBlocks.apply(x, y, scale, bias, offset, kind, both, chunk)
