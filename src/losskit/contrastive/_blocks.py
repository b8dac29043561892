"""Row losses over a similarity matrix computed block by block, the gradient by recomputation.

The matrix is :math:`S = s\\, X Y^\\top + b` (``X`` ``(n, D)`` rows, ``Y`` ``(m, D)`` columns, a
scalar scale ``s`` and bias ``b``); row ``i``'s own column is ``o + k i`` (``offset`` ``o``,
``stride`` ``k``; ``offset = -1``: none, a block of another rank's columns). Optional extra
logits ``E`` ``(n, M)`` (per-row negatives, computed by the caller) join each row's
denominator; with labels, the positives of row ``i`` are the columns ``j < len(col_y)`` with
``col_y[j] == row_y[i]``. Four row losses:

* ``"softmax"``: :math:`\\ell_i = \\operatorname{LSE}(S_{i\\cdot}, E_{i\\cdot}) - S_{i,o+i}` (CLIP,
  InfoNCE); ``both=True`` (a square matrix, ``offset = 0``) adds the column direction and
  returns :math:`\\tfrac12(\\text{row}_i + \\text{col}_i)` with
  :math:`\\text{col}_i = \\operatorname{LSE}_j S_{ji} - S_{ii}` — CLIP's symmetric loss on one
  matrix, each block computed once for both directions;
* ``"supcon"`` (labels): :math:`\\ell_i = \\operatorname{LSE}_{j \\ne o+ki} S_{ij} -
  \\tfrac{1}{|P_i|}\\sum_{p \\in P_i} S_{ip}`, the own column excluded from the positives and
  the denominator, 0 for a row without positives (SupCon);
* ``"multi"`` (labels): :math:`\\ell_i = \\tfrac{1}{|P_i|}\\sum_{p \\in P_i}
  \\log(1 + e^{\\nu_i - S_{ip}})` with :math:`\\nu_i = \\operatorname{LSE}(S_{i,j \\notin P_i},
  E_{i\\cdot})`: each positive against the negatives only (InfoNCE with ``labels``);
* ``"sigmoid"``: :math:`\\ell_i = \\sum_j \\operatorname{softplus}(S_{ij}) - S_{i,o+i}`
  :math:`= -\\sum_j \\log\\sigma(z_{ij} S_{ij})` with :math:`z = \\pm 1` (SigLIP).

:class:`RowBlocks` never holds more than ``chunk`` rows of ``S`` (a ``chunk × m`` block and a
few temporaries of its size): the forward keeps one log-sum-exp per row (and column), the
backward recomputes each block and accumulates ``dX``, ``dY``, ``ds``, ``db`` and ``dE``. It is
first-order only (no double backward) and is not a ``torch.func`` transform target; the
unchunked paths are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import first_order_only

__all__ = ["KINDS", "RowBlocks", "row_losses"]

KINDS = ("softmax", "supcon", "multi", "sigmoid")
_HINT = "call the loss with chunk_size=None for the plain autograd path"


def _logits(out: torch.Tensor, xs: torch.Tensor, y: torch.Tensor, bias) -> torch.Tensor:
    """One row block of ``S`` from the pre-scaled rows ``xs = scale * x``, written into ``out``."""
    torch.mm(xs, y.T, out=out)
    return out if bias is None else out.add_(bias)


def _finite(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its infinite entries (rows without any term) replaced by 0, a safe shift."""
    return torch.where(torch.isfinite(t), t, 0.0)


def _lse_rows(logits: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """Row log-sum-exp of ``logits`` (``-inf`` for a row of ``-inf``), ``tmp`` overwritten."""
    row_max = _finite(logits.amax(1))
    return row_max + torch.log(torch.sub(logits, row_max[:, None], out=tmp).exp_().sum(1))


def _softplus_(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` in place (exact for large ``z``, unlike
    ``F.softplus``'s threshold), ``tmp`` overwritten."""
    torch.abs(z, out=tmp).neg_().exp_().log1p_()
    return z.clamp_(min=0).add_(tmp)


def _positives(mask: torch.Tensor, row_y, col_y, own) -> torch.Tensor:
    """The block's positive mask: equal labels among the labelled columns, not the own column
    (``own``: ``(c, 1)`` column indices, or None)."""
    m_lab = col_y.shape[0]
    torch.eq(row_y[:, None], col_y[None, :], out=mask[:, :m_lab])
    mask[:, m_lab:] = False
    if own is not None:
        mask.scatter_(1, own, False)
    return mask


class RowBlocks(torch.autograd.Function):
    """Per-row losses ``(n,)`` of ``S = scale * x @ y.T + bias``, ``chunk`` rows at a time.

    Two ``chunk × m`` buffers (and a boolean one with labels), allocated once per pass and
    reused by every block (no allocator churn), and ``chunk × D`` row temporaries: besides the
    gradients themselves, nothing of size ``n × m`` or ``n × D`` is allocated.
    """

    @staticmethod
    def forward(ctx, x, y, scale, bias, extra, row_y, col_y, offset, stride, kind, both, chunk):
        # The blocks compute in the inputs' dtype (float32 for half inputs), autocast or not.
        with torch.autocast(x.device.type, enabled=False):
            out, row_lse, col_lse = RowBlocks._forward(
                x, y, scale, bias, extra, row_y, col_y, offset, stride, kind, both, chunk
            )
        ctx.save_for_backward(x, y, scale, bias, extra, row_y, col_y, row_lse, col_lse)
        ctx.meta = (offset, stride, kind, both, chunk)
        return out

    @staticmethod
    def _forward(x, y, scale, bias, extra, row_y, col_y, offset, stride, kind, both, chunk):
        n, m = x.shape[0], y.shape[0]
        out = x.new_empty(n)
        # softmax, supcon: the row log-sum-exp; multi: the negatives' log-sum-exp.
        row_lse = x.new_empty(n) if kind != "sigmoid" else None
        if both:  # running column max and sum of exponentials, updated block after block
            col_max = x.new_full((m,), -torch.inf)
            col_sum = x.new_zeros(m)
        rows_per = min(chunk, n)
        buf, tmp = x.new_empty(rows_per, m), x.new_empty(rows_per, m)
        mask = None if row_y is None else x.new_empty((rows_per, m), dtype=torch.bool)
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            xs = x[i0:i1] * scale  # the scale folded into the rows, not into the block
            logits, t = _logits(buf[: i1 - i0], xs, y, bias), tmp[: i1 - i0]
            if kind == "softmax":
                lse = _lse_rows(logits, t)
                if extra is not None:
                    lse = torch.logaddexp(lse, torch.logsumexp(extra[i0:i1], 1))
                row_lse[i0:i1] = lse
                out[i0:i1] = lse
                if both:
                    new_max = torch.maximum(col_max, logits.amax(0))
                    cols = torch.sub(logits, new_max, out=t).exp_().sum(0)
                    col_sum = col_sum * torch.exp(col_max - new_max) + cols
                    col_max = new_max
            elif kind == "sigmoid":
                out[i0:i1] = _softplus_(logits, t).sum(1)  # -log sigmoid(-S)
            else:
                own = None
                if kind == "supcon":
                    own = (torch.arange(i0, i1, device=x.device) * stride + offset)[:, None]
                pos = _positives(mask[: i1 - i0], row_y[i0:i1], col_y, own)
                count = pos.sum(1)
                if kind == "supcon":
                    pos_sum = torch.mul(logits, pos, out=t).sum(1)
                    lse = _lse_rows(logits.scatter_(1, own, -torch.inf), t)
                    row_lse[i0:i1] = lse
                    out[i0:i1] = torch.where(count > 0, lse - pos_sum / count.clamp_min(1), 0.0)
                else:  # multi: each positive p against the negatives: softplus(nu - S_ip)
                    nu = _lse_rows(t.copy_(logits).masked_fill_(pos, -torch.inf), t)
                    if extra is not None:
                        nu = torch.logaddexp(nu, torch.logsumexp(extra[i0:i1], 1))
                    row_lse[i0:i1] = nu
                    terms = _softplus_(torch.sub(nu[:, None], logits, out=logits), t)
                    out[i0:i1] = terms.mul_(pos).sum(1) / count.clamp_min(1)
            if offset >= 0 and kind in ("softmax", "sigmoid"):  # minus S_{i,o+i}
                pos = (xs * y[offset + i0 : offset + i1]).sum(1)
                out[i0:i1] -= pos if bias is None else pos + bias
        col_lse = None
        if both:
            col_lse = col_max + torch.log(col_sum)
            # out holds row_lse_i - S_ii; the mean of the two directions is
            # (row_lse_i + col_lse_i) / 2 - S_ii.
            out = out + 0.5 * (col_lse - row_lse)
        return out, row_lse, col_lse

    @staticmethod
    @first_order_only("a chunked contrastive loss", _HINT)
    def backward(ctx, grad):
        with torch.autocast(grad.device.type, enabled=False):
            return RowBlocks._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        x, y, scale, bias, extra, row_y, col_y, row_lse, col_lse = ctx.saved_tensors
        offset, stride, kind, both, chunk = ctx.meta
        n, m = x.shape[0], y.shape[0]
        grad = grad.to(x.dtype)
        dx = torch.empty_like(x)
        dy = torch.zeros_like(y)
        dextra = None if extra is None else torch.empty_like(extra)
        dscale = x.new_zeros(())
        dbias = x.new_zeros(())
        half = 0.5 if both else 1.0
        rows_per = min(chunk, n)
        buf = x.new_empty(rows_per, m)
        tmp = x.new_empty(rows_per, m) if kind != "sigmoid" else None
        mask = None if row_y is None else x.new_empty((rows_per, m), dtype=torch.bool)
        for i0 in range(0, n, chunk):
            i1 = min(n, i0 + chunk)
            xi, g = x[i0:i1], grad[i0:i1, None]
            xs = xi * scale
            logits = _logits(buf[: i1 - i0], xs, y, bias)
            if kind == "softmax":
                # d row_i / d S_ij = softmax_j(S_i.), d col_l / d S_kl = softmax_k(S_.l)
                lse = row_lse[i0:i1, None]
                dlogits = torch.sub(logits, lse, out=tmp[: i1 - i0])
                dlogits.exp_().mul_(half * g)
                if both:
                    dlogits += logits.sub_(col_lse[None, :]).exp_().mul_(half * grad[None, :])
                if extra is not None:
                    dextra[i0:i1] = torch.exp(extra[i0:i1] - lse) * (half * g)
            elif kind == "sigmoid":
                dlogits = logits.sigmoid_().mul_(g)
            else:
                own = None
                if kind == "supcon":
                    own = (torch.arange(i0, i1, device=x.device) * stride + offset)[:, None]
                pos = _positives(mask[: i1 - i0], row_y[i0:i1], col_y, own)
                count = pos.sum(1, keepdim=True)
                if kind == "supcon":
                    # softmax over the columns but the own one, minus 1/|P| on the positives;
                    # nothing for a row without positives.
                    gc = torch.where(count > 0, g / count.clamp_min(1), 0.0)
                    lse = _finite(row_lse[i0:i1, None])
                    dlogits = logits.scatter_(1, own, -torch.inf).sub_(lse).exp_()
                    dlogits.mul_(gc * count).sub_(torch.mul(pos, gc, out=tmp[: i1 - i0]))
                else:  # multi: a_ip = sigmoid(nu_i - S_ip) on the positives
                    nu = row_lse[i0:i1, None]
                    a = torch.sub(nu, logits, out=tmp[: i1 - i0]).sigmoid_().mul_(pos)
                    gc = g / count.clamp_min(1)
                    w = a.sum(1, keepdim=True).mul_(gc)  # each negative: w_i softmax_nu
                    # (a row without negatives has nu = -inf: its entries are all positives,
                    # refilled below, so the overflow there is never used)
                    dlogits = logits.sub_(nu).exp_().mul_(w).masked_fill_(pos, 0.0)
                    dlogits.sub_(a.mul_(gc))
                    if extra is not None:
                        dextra[i0:i1] = torch.exp(extra[i0:i1] - _finite(nu)) * w
            if bias is not None:
                dbias += dlogits.sum()
            gy = dlogits @ y  # dS y: dx = scale dS y, and dscale = sum_i x_i . (dS y)_i
            dy.addmm_(dlogits.T, xs)
            if offset >= 0 and kind in ("softmax", "sigmoid"):
                # the positive's -S_{i,o+i}: the directions subtract it once in all
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
            dextra if extra is not None and need[4] else None,
            *([None] * 7),
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
    *,
    extra: torch.Tensor | None = None,
    row_y: torch.Tensor | None = None,
    col_y: torch.Tensor | None = None,
    stride: int = 1,
) -> torch.Tensor:
    """Per-row losses ``(n,)`` (see the module docstring); chunked when ``chunk`` is given.

    ``extra`` and the labels (``"supcon"``, ``"multi"``) are block-wise only: the callers'
    unchunked paths write those losses out with plain autograd.
    """
    if chunk is None:
        if extra is not None or kind not in ("softmax", "sigmoid"):
            raise ValueError(f"row_losses: kind={kind!r} with extra logits needs chunk")
        return _plain_rows(x, y, scale, bias, offset, kind, both)
    if col_y is not None and col_y is row_y:  # torch.compile refuses one tensor as two inputs
        col_y = col_y.clone()
    return RowBlocks.apply(
        x, y, scale, bias, extra, row_y, col_y, offset, stride, kind, both, chunk
    )
