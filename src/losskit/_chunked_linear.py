"""The chunked engine of :func:`losskit.linear_cross_entropy`: logits one chunk of rows at a time.

One pass over the kept rows computes, per chunk, the logits ``s * (x W^T + b)`` (soft-capped),
their per-row loss and log-sum-exp, and (when asked) their gradient, written over the chunk's own
float32 buffer and multiplied at once into the gradients of ``x``, ``W`` and ``b``. The same pass
serves the forward of ``mean``/``sum`` (gradients computed there, scaled in the backward), the
forward of ``none`` (losses only) and every backward that must recompute (``none``, or a second
backward with ``retain_graph``).

Working set per chunk (measured in ``tests/test_linear_head.py``): the float32 logits buffer, plus
a copy in the matmul dtype when it is float16/bfloat16 (autocast or half inputs), plus a second
float32 buffer with ``softcap`` (the derivative of ``tanh`` needs it). Ignored rows are dropped
before the first matrix product (not while ``torch.compile`` traces: there a mask does the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._autograd import first_order_only

# Default working set of one chunk's logits (bytes). 32 MiB: at V=32768 a chunk is 256 rows, whose
# products run as fast on the CPU as the unchunked ones (benchmarks/bench_lm_head_cpu.py); 64-row
# chunks cost 1.5x the CPU time there (the weight gradient is read and written once per chunk and
# thin products are slow). ``chunk_bytes=`` moves it.
DEFAULT_CHUNK_BYTES = 32 << 20
# On CUDA, 512 MiB (the budget of losskit's earlier kernel path: ~700 rows of bf16 logits at
# V=128256): every chunk reads the whole weight twice and accumulates its gradient once, so GPU
# chunks must be long. Not measured in this change (no GPU at hand).
DEFAULT_CHUNK_BYTES_CUDA = 512 << 20
# The default chunk never holds more than this fraction of the rows, so chunking saves memory at
# every vocabulary size (a small vocabulary no longer fits the whole batch in one chunk).
MIN_CHUNKS = 4


@dataclass(frozen=True)
class Opts:
    """The validated options of one call (hashable, so a Function can carry it)."""

    reduction: str
    ignore_index: int
    eps: float
    chunk: int
    softcap: float | None
    logit_scale: float
    z_scale: float
    mm_dtype: torch.dtype
    acc_dtype: torch.dtype
    drop_ignored: bool
    use_kernel: bool


def default_chunk_bytes(device: torch.device) -> int:
    return DEFAULT_CHUNK_BYTES_CUDA if device.type == "cuda" else DEFAULT_CHUNK_BYTES


def rows_per_chunk(n_rows: int, n_cols: int, mm_dtype: torch.dtype, chunk_bytes: int) -> int:
    """Rows of one chunk: its float32 logits (plus their ``mm_dtype`` copy) within the budget."""
    per_row = max(n_cols, 1) * (4 + (mm_dtype.itemsize if mm_dtype.itemsize < 4 else 0))
    return max(1, min(chunk_bytes // per_row, -(-max(n_rows, 1) // MIN_CHUNKS)))


# ---------------------------------------------------------------- the math of one chunk


def chunk_formula(
    z: torch.Tensor,
    tgt: torch.Tensor,
    cw: torch.Tensor | None,
    w_sum: torch.Tensor,
    a_ce: torch.Tensor,
    a_z: torch.Tensor,
    o: Opts,
    grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(ce, z_loss)`` of the float32 logits ``z`` (owned: overwritten).

    With ``grad``, ``z`` ends holding ``a_ce * d ce / d z + a_z * d zloss / d z`` (``a_*`` are
    scalars or per-row vectors), through the softcap but before ``logit_scale``. In place, so
    one buffer (two with ``softcap``) is the whole working set.
    """
    n_cols = z.shape[1]
    if o.logit_scale != 1.0:
        z.mul_(o.logit_scale)
    tanh = None
    if o.softcap is not None:
        z.div_(o.softcap).tanh_()
        if grad:
            tanh = z.clone()
        z.mul_(o.softcap)
    probs = tgt.is_floating_point()
    if probs:
        keep = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        t = tgt.to(z.dtype)
        if o.eps > 0.0:
            t = t * (1.0 - o.eps) + o.eps / n_cols
        wt = t if cw is None else t * cw
        wt_sum = wt.sum(1)
        wt_dot = torch.bmm(wt.unsqueeze(1), z.unsqueeze(2)).reshape(-1)
    else:
        keep = tgt != o.ignore_index
        safe = torch.where(keep, tgt, 0).long()
        z_y = z.gather(1, safe.unsqueeze(1)).squeeze(1)
        w_y = z_y.new_ones(()) if cw is None else cw[safe]
        w_y = torch.where(keep, w_y, 0.0)
        if o.eps > 0.0:
            z_dot = z.sum(1) if cw is None else torch.mv(z, cw)
    m = z.amax(1)
    z.sub_(m.unsqueeze(1)).exp_()
    s = z.sum(1)
    log_s = s.log()
    lse = m + log_s
    if probs:
        ce = wt_sum * lse - wt_dot
    else:
        # (m - z_y) + log s, not lse - z_y: at logits near 1e4 float32 lse has lost its fraction.
        ce = (1.0 - o.eps) * w_y * ((m - z_y) + log_s)
        if o.eps > 0.0:
            ce = ce + torch.where(keep, o.eps / n_cols * (w_sum * lse - z_dot), 0.0)
    zl = torch.where(keep, o.z_scale * lse * lse, 0.0) if o.z_scale else torch.zeros_like(ce)
    if not grad:
        return ce, zl
    # z holds exp(z - m); dividing by s gives the softmax p, folded into its row coefficient.
    if probs:
        coef = a_ce * wt_sum
    else:
        kept = keep.to(z.dtype)
        coef = a_ce * ((1.0 - o.eps) * w_y + kept * (o.eps / n_cols) * w_sum)
    if o.z_scale:
        coef = coef + a_z * keep * (2.0 * o.z_scale) * lse
    z.mul_((coef / s).unsqueeze(1))
    if probs:
        z.sub_(wt * a_ce.reshape(-1, 1) if a_ce.dim() else wt * a_ce)
    else:
        z.scatter_add_(1, safe.unsqueeze(1), (-(a_ce * (1.0 - o.eps) * w_y)).unsqueeze(1))
        if o.eps > 0.0:
            c = (a_ce * kept * (o.eps / n_cols)).expand(z.shape[0])
            if cw is None:
                z.sub_(c.unsqueeze(1))
            else:
                z.addr_(c, cw, alpha=-1.0)
    if tanh is not None:
        z.mul_(tanh.square_().neg_().add_(1.0))  # d (c tanh(u / c)) / du = 1 - tanh^2
    return ce, zl


# ---------------------------------------------------------------- the pass over the chunks


@dataclass
class Grads:
    gx: torch.Tensor | None
    gw: torch.Tensor | None  # float32 (float64 for float64 weights) accumulator
    gb: torch.Tensor | None


def chunked_pass(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    tgt: torch.Tensor,
    cw: torch.Tensor | None,
    w_sum: torch.Tensor,
    a_ce: torch.Tensor,
    a_z: torch.Tensor,
    o: Opts,
    *,
    want: tuple[bool, bool, bool],
    want_loss: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, Grads]:
    """One pass over the chunks: per-row ``(ce, z)`` (if ``want_loss``) and the gradients in
    ``want`` (of ``x``, ``W``, ``b``), scaled per row by ``a_ce`` / ``a_z`` (scalars, or
    vectors over the rows of ``x``). Runs with autocast off: the dtypes are ``o``'s."""
    n, n_cols = x.shape[0], w.shape[0]
    device = x.device
    acc = o.acc_dtype
    ce_rows = zl_rows = None
    if want_loss:
        ce_rows = torch.zeros(n, device=device, dtype=acc)
        zl_rows = torch.zeros(n, device=device, dtype=acc)
    gx = gw = gb = None
    rows = None
    if o.drop_ignored and not tgt.is_floating_point():
        keep = tgt != o.ignore_index
        rows = keep.nonzero().squeeze(1)  # a host sync, repaid by the matrix products saved
        if rows.numel() == n:
            rows = None
    if want[0]:
        gx = (
            torch.zeros((n, x.shape[1]), device=device, dtype=x.dtype)
            if rows is not None
            else torch.empty((n, x.shape[1]), device=device, dtype=x.dtype)
        )
    if want[1]:  # written by the first chunk's product (beta=0), zeroed only if there is none
        gw = torch.empty((n_cols, w.shape[1]), device=device, dtype=acc)
    if want[2]:
        gb = torch.zeros(n_cols, device=device, dtype=acc)
    grads = Grads(gx, gw, gb)
    total = n if rows is None else rows.numel()
    if total == 0:
        if gw is not None:
            gw.zero_()
        return ce_rows, zl_rows, grads

    # The operands of the matrix products, cast once (autocast would cast them per call too).
    w_m = w.to(o.mm_dtype)
    b_m = None if b is None else b.to(o.mm_dtype)
    any_grad = any(want)
    per_row_a = a_ce.dim() > 0
    # One chunk buffer for the whole pass (plus a float32 one when the products are half): a
    # fresh 32 MiB buffer per chunk would be mapped and faulted in again each time.
    rows_max = min(o.chunk, total)
    buf = torch.empty((rows_max, n_cols), device=device, dtype=o.mm_dtype)
    buf32 = None
    if o.mm_dtype != acc and not o.use_kernel:
        buf32 = torch.empty((rows_max, n_cols), device=device, dtype=acc)
    for r0 in range(0, total, o.chunk):
        r1 = min(r0 + o.chunk, total)
        if rows is None:
            idx = None
            xc, tc = x[r0:r1], tgt[r0:r1]
        else:
            idx = rows[r0:r1]
            xc, tc = x.index_select(0, idx), tgt.index_select(0, idx)
        logits = chunk_logits(xc.to(o.mm_dtype), w_m, b_m, buf[: r1 - r0])
        if per_row_a:
            ac = a_ce[r0:r1] if idx is None else a_ce.index_select(0, idx)
            az = a_z[r0:r1] if idx is None else a_z.index_select(0, idx)
        else:
            ac, az = a_ce, a_z
        if o.use_kernel:
            from .kernels.linear.function import chunk_kernel

            g, ce, zl = chunk_kernel(logits, tc, cw, w_sum, ac, az, o, any_grad)
        else:
            g = logits if buf32 is None else buf32[: r1 - r0].copy_(logits)
            ce, zl = chunk_formula(g, tc, cw, w_sum, ac, az, o, any_grad)
        if want_loss:
            if idx is None:
                ce_rows[r0:r1], zl_rows[r0:r1] = ce, zl
            else:
                ce_rows.index_copy_(0, idx, ce.to(acc))
                zl_rows.index_copy_(0, idx, zl.to(acc))
        if any_grad:
            _accumulate(g, xc, w_m, grads, idx, r0, r1, o)
        del g, xc, logits
    return ce_rows, zl_rows, grads


def chunk_logits(
    xc: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out: torch.Tensor
) -> torch.Tensor:
    """``xc @ w.T + b`` written into ``out`` (the pass's reused chunk buffer)."""
    if b is None:
        return torch.mm(xc, w.t(), out=out)
    return torch.addmm(b, xc, w.t(), out=out)


def _accumulate(
    g: torch.Tensor,
    xc: torch.Tensor,
    w_m: torch.Tensor,
    grads: Grads,
    idx: torch.Tensor | None,
    r0: int,
    r1: int,
    o: Opts,
) -> None:
    """Add one chunk's logits gradient ``g`` into the gradients (``logit_scale`` applied here)."""
    scale = o.logit_scale
    if grads.gx is not None:
        # The input's gradient in the matmul dtype (as autocast would compute it).
        g_m = g if g.dtype == o.mm_dtype else g.to(o.mm_dtype)
        gxc = torch.mm(g_m, w_m)
        del g_m
        if scale != 1.0:
            gxc.mul_(scale)
        if idx is None:
            grads.gx[r0:r1].copy_(gxc)
        else:
            grads.gx.index_copy_(0, idx, gxc.to(grads.gx.dtype))
    if grads.gw is not None:
        # Accumulated in float32 across chunks: the product itself runs in float32 (addmm_ cannot
        # write half products into a float32 buffer; on the CPU half GEMMs are emulated anyway).
        acc = grads.gw.dtype
        grads.gw.addmm_(g.to(acc).t(), xc.to(acc), beta=0.0 if r0 == 0 else 1.0, alpha=scale)
    if grads.gb is not None:
        grads.gb.add_(g.sum(0, dtype=grads.gb.dtype), alpha=scale)


# ---------------------------------------------------------------- the autograd Function


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``(loss, z_loss)`` of ``CE(cap(s (x W^T + b)), y) + z_scale lse^2``, chunked over rows.

    For ``mean``/``sum`` the gradients are computed in the forward and scaled by the upstream
    gradient in the backward, in place (a second backward, with ``retain_graph``, recomputes
    them); for ``none`` the backward recomputes the chunks with the per-row upstream gradient.
    ``z_loss`` carries no gradient (it is part of ``loss``).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        tgt: torch.Tensor,
        cw: torch.Tensor | None,
        o: Opts,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, n_cols = x.shape[0], w.shape[0]
        acc = o.acc_dtype
        device = x.device
        w_sum = torch.tensor(float(n_cols), device=device, dtype=acc) if cw is None else cw.sum()
        if tgt.is_floating_point():
            denom = torch.tensor(float(n), device=device, dtype=acc)
            n_kept = denom
        else:
            keep = tgt != o.ignore_index
            n_kept = keep.sum().to(acc)
            if cw is None:
                denom = n_kept
            else:
                safe = tgt.long().clamp(0, max(n_cols - 1, 0))  # uint8 would index as a mask
                denom = (cw[safe] * keep).sum()
        one = torch.ones((), device=device, dtype=acc)
        if o.reduction == "mean":
            # 0 where nothing is kept: those rows' gradients are 0 and 0 * inf would be NaN.
            a_ce = torch.where(denom != 0, 1.0 / denom, 0.0)
            a_z = torch.where(n_kept != 0, 1.0 / n_kept, 0.0)
        else:
            a_ce = a_z = one
        needs = ctx.needs_input_grad
        fused = o.reduction != "none" and any(needs[:3])
        want = tuple(bool(k) for k in needs[:3]) if fused else (False, False, False)
        ce_rows, zl_rows, grads = chunked_pass(
            x, w, b, tgt, cw, w_sum, a_ce, a_z, o, want=want, want_loss=True
        )
        if o.reduction == "none":
            loss, zl = ce_rows + zl_rows, zl_rows
        elif o.reduction == "sum":
            zl = zl_rows.sum()
            loss = ce_rows.sum() + zl
        else:  # 0 / 0 = NaN where nothing is kept, as torch
            zl = zl_rows.sum() / n_kept
            loss = ce_rows.sum() / denom + zl
        ctx.o = o
        ctx.save_for_backward(x, w, b, tgt, cw, w_sum, a_ce, a_z)
        ctx.grads = grads if fused else None
        ctx.mark_non_differentiable(zl)
        return loss, zl

    @staticmethod
    @first_order_only(
        "linear_cross_entropy",
        "compute cross_entropy(F.linear(input, linear_weight, linear_bias), target) instead",
    )
    def backward(ctx, grad_out: torch.Tensor, _grad_z: torch.Tensor):  # type: ignore[override]
        o: Opts = ctx.o
        x, w, b, tgt, cw, w_sum, a_ce, a_z = ctx.saved_tensors
        needs = tuple(bool(k) for k in ctx.needs_input_grad[:3])
        go = grad_out.to(o.acc_dtype)
        grads = ctx.grads
        ctx.grads = None  # handed over once; a second backward recomputes
        if grads is None:
            if o.reduction == "none":
                a_ce = a_z = go.reshape(-1)
                go = None
            with torch.autocast(x.device.type, enabled=False):
                _, _, grads = chunked_pass(
                    x, w, b, tgt, cw, w_sum, a_ce, a_z, o, want=needs, want_loss=False
                )
        gx, gw, gb = grads.gx, grads.gw, grads.gb
        if go is not None and not _is_one(go):
            for g in (gx, gw, gb):
                if g is not None:
                    g.mul_(go.to(g.dtype))
        gw = None if gw is None else gw.to(w.dtype)
        gb = None if gb is None else gb.to(b.dtype)
        return gx, gw, gb, None, None, None


def _is_one(go: torch.Tensor) -> bool:
    """Whether the upstream scalar is exactly 1 (read on the CPU only: no device sync)."""
    if go.device.type != "cpu" or torch.compiler.is_compiling() or go.numel() != 1:
        return False
    return bool(go == 1)
