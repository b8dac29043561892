"""Triton kernel of cross entropy with class-index targets (one program per row).

The logits are read as a ``(B, C, S)`` view with arbitrary strides: row ``r`` is ``(r // S, :,
r % S)``, so ``(N, C)``, ``(N, C, d1, ..., dK)`` and non-contiguous inputs need no copy.
Arithmetic is float32 whatever the storage dtype.

Per kept row, with soft-capped logits ``x`` (``cap * tanh(x / cap)`` when ``SOFTCAP``), class
weights ``w``, smoothing ``eps`` and ``lse = logsumexp(x)``::

    loss = (1 - eps) * w_y * (lse - x_y) + eps / C * (lse * sum_c w_c - sum_c w_c x_c)
    z    = z_scale * lse**2
    dloss/dx_c = s_ce * [(1 - eps) w_y (p_c - [c = y]) + eps / C (p_c sum_c' w_c' - w_c)]
               + s_z * 2 z_scale lse p_c                 (times 1 - (x_c / cap)^2 if SOFTCAP)

``LSE`` holds ``(max, log sum exp(x - max))`` per row. ``s_ce``/``s_z`` are the gradient scales (``1 / sum_i w_{y_i}`` and ``1 / #kept`` for a mean),
read from device memory so no value ever travels to the host. Ignored rows get loss 0 and a zero
gradient without reading their logits. With more classes than ``BLOCK`` the row is read twice:
once for the statistics (kept in L2 with ``evict_last``) and once, last block first, for the
gradient.
"""

import triton
import triton.language as tl


@triton.jit
def _softcap(x, cap):
    # cap * tanh(x / cap) from one exp; exp overflowing to inf gives exactly +-cap.
    e = tl.exp(2.0 * x / cap)
    return cap - 2.0 * cap / (e + 1.0)


@triton.jit
def _load_row_block(
    x_row,
    cols,
    sxc,
    n_cols,
    cap,
    SOFTCAP: tl.constexpr,
    EVICT_LAST: tl.constexpr,
):
    mask = cols < n_cols
    if EVICT_LAST:
        x = tl.load(
            x_row + cols * sxc, mask=mask, other=float("-inf"), eviction_policy="evict_last"
        )
    else:
        x = tl.load(
            x_row + cols * sxc, mask=mask, other=float("-inf"), eviction_policy="evict_first"
        )
    x = x.to(tl.float32)
    if SOFTCAP:
        x = tl.where(mask, _softcap(x, cap), float("-inf"))
    return x, mask


@triton.jit
def _grad_block(
    x,
    mask,
    cols,
    y,
    m,
    log_s,
    a_ce,
    s_smooth,
    w_sum,
    a_z,
    W,
    cap,
    HAS_WEIGHT: tl.constexpr,
    SMOOTH: tl.constexpr,
    ZLOSS: tl.constexpr,
    SOFTCAP: tl.constexpr,
):
    # (x - m) - log s, not x - lse: with logits near 1e4 the float32 lse has lost its fraction.
    p = tl.exp((x - m) - log_s)
    g = a_ce * (p - tl.where(cols == y, 1.0, 0.0))
    if SMOOTH:
        if HAS_WEIGHT:
            w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        else:
            w = 1.0
        g += s_smooth * (w_sum * p - w)
    if ZLOSS:
        g += a_z * p
    if SOFTCAP:
        t = x / cap
        g = g * (1.0 - t * t)
    return g


@triton.jit
def _ce_row(
    row,
    X,
    sxb,
    sxc,
    sxs,
    G,
    sgb,
    sgc,
    sgs,
    T,
    W,
    CONSTS,
    GO,
    LOSS,
    Z,
    LSE,
    n_cols,
    n_inner,
    ignore_index,
    eps,
    z_scale,
    cap,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SMOOTH: tl.constexpr,
    ZLOSS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    STATS: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
):
    """One row: statistics and loss (``STATS``) and/or the gradient (``GRAD``).

    ``STATS=False`` reads the saved ``LSE`` instead (the backward of ``reduction="none"``).
    ``ROW_SCALE`` takes the gradient scale of each row from ``GO`` (the upstream gradient of an
    unreduced loss); otherwise ``CONSTS[0]`` and ``CONSTS[1]`` scale the CE and z-loss parts.
    ``CONSTS[2]`` holds ``sum_c w_c`` when there are class weights.
    """
    b = row // n_inner
    s = row - b * n_inner
    x_row = X + b * sxb + s * sxs
    g_row = G + b * sgb + s * sgs
    y = tl.load(T + row).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    if y == ignore_index:
        if STATS:
            tl.store(LOSS + row, 0.0)
            tl.store(LSE + 2 * row, 0.0)
            tl.store(LSE + 2 * row + 1, 0.0)
            if ZLOSS:
                tl.store(Z + row, 0.0)
        if GRAD:
            zero = tl.zeros([BLOCK], dtype=G.dtype.element_ty)
            for start in range(0, n_cols, BLOCK):
                cols = start + offs
                tl.store(g_row + cols * sgc, zero, mask=cols < n_cols)
    else:
        # An index outside [0, C) (possible only with the value checks off) gives NaN, never an
        # out-of-bounds read.
        in_range = (y >= 0) & (y < n_cols)
        y_safe = tl.where(in_range, y, 0)
        if HAS_WEIGHT:
            w_y = tl.load(W + y_safe).to(tl.float32)
            w_sum = tl.load(CONSTS + 2)
        else:
            w_y = 1.0
            w_sum = n_cols * 1.0
        if SINGLE:
            x, mask = _load_row_block(x_row, offs, sxc, n_cols, cap, SOFTCAP, False)
            if STATS:
                m = tl.max(x, 0)
                log_s = tl.log(tl.sum(tl.exp(x - m), 0))
                r = m
                if SMOOTH:
                    if HAS_WEIGHT:
                        w = tl.load(W + offs, mask=mask, other=0.0).to(tl.float32)
                        sx = tl.sum(tl.where(mask, x - r, 0.0) * w, 0)
                    else:
                        sx = tl.sum(tl.where(mask, x - r, 0.0), 0)
            else:
                m = tl.load(LSE + 2 * row)
                log_s = tl.load(LSE + 2 * row + 1)
        else:
            if STATS:
                # The first block's maximum is the fixed reference r of the smoothing sum
                # sum_c w_c (x_c - r): summing x_c themselves would cancel badly at |x| ~ 1e4.
                if SMOOTH:
                    x0, _ = _load_row_block(x_row, offs, sxc, n_cols, cap, SOFTCAP, True)
                    r = tl.max(x0, 0)
                    m = r
                else:
                    r = 0.0
                    m = float("-inf")
                acc = 0.0
                sx = 0.0
                for start in range(0, n_cols, BLOCK):
                    cols = start + offs
                    xb, mb = _load_row_block(x_row, cols, sxc, n_cols, cap, SOFTCAP, True)
                    m_new = tl.maximum(m, tl.max(xb, 0))
                    # While every logit so far is -inf (a masked start of the vocabulary),
                    # shift by 0: exp(-inf - (-inf)) would be NaN.
                    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
                    acc = acc * tl.exp(m - shift) + tl.sum(tl.exp(xb - shift), 0)
                    m = m_new
                    if SMOOTH:
                        if HAS_WEIGHT:
                            wb = tl.load(W + cols, mask=mb, other=0.0).to(tl.float32)
                            sx += tl.sum(tl.where(mb, xb - r, 0.0) * wb, 0)
                        else:
                            sx += tl.sum(tl.where(mb, xb - r, 0.0), 0)
                log_s = tl.log(acc)
            else:
                m = tl.load(LSE + 2 * row)
                log_s = tl.load(LSE + 2 * row + 1)
        if STATS:
            x_y = tl.load(x_row + y_safe * sxc).to(tl.float32)
            if SOFTCAP:
                x_y = _softcap(x_y, cap)
            x_y = tl.where(in_range, x_y, float("nan"))
            loss = w_y * ((m - x_y) + log_s)
            if SMOOTH:
                loss = (1.0 - eps) * loss + eps / n_cols * (((m - r) + log_s) * w_sum - sx)
            tl.store(LOSS + row, loss)
            tl.store(LSE + 2 * row, m)
            tl.store(LSE + 2 * row + 1, log_s)
            if ZLOSS:
                lse = m + log_s
                tl.store(Z + row, z_scale * lse * lse)
        if GRAD:
            if ROW_SCALE:
                s_ce = tl.load(GO + row).to(tl.float32)
                s_z = s_ce
            else:
                s_ce = tl.load(CONSTS)
                s_z = tl.load(CONSTS + 1)
            a_ce = (1.0 - eps) * w_y * s_ce
            s_smooth = eps / n_cols * s_ce
            a_z = 2.0 * z_scale * (m + log_s) * s_z
            if SINGLE:
                g = _grad_block(
                    x, mask, offs, y, m, log_s, a_ce, s_smooth, w_sum, a_z, W, cap,
                    HAS_WEIGHT, SMOOTH, ZLOSS, SOFTCAP,
                )  # fmt: skip
                tl.store(g_row + offs * sgc, g.to(G.dtype.element_ty), mask=mask)
            else:
                n_blocks = tl.cdiv(n_cols, BLOCK)
                for i in range(0, n_blocks):
                    # Last block first: it is the most recently read, the likeliest still in L2.
                    cols = (n_blocks - 1 - i) * BLOCK + offs
                    xb, mb = _load_row_block(x_row, cols, sxc, n_cols, cap, SOFTCAP, False)
                    g = _grad_block(
                        xb, mb, cols, y, m, log_s, a_ce, s_smooth, w_sum, a_z, W, cap,
                        HAS_WEIGHT, SMOOTH, ZLOSS, SOFTCAP,
                    )  # fmt: skip
                    tl.store(g_row + cols * sgc, g.to(G.dtype.element_ty), mask=mb)


@triton.jit
def ce_kernel(
    X,
    sxb,
    sxc,
    sxs,
    G,
    sgb,
    sgc,
    sgs,
    T,
    W,
    CONSTS,
    GO,
    LOSS,
    Z,
    LSE,
    n_rows,
    n_cols,
    n_inner,
    ignore_index,
    eps,
    z_scale,
    cap,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SMOOTH: tl.constexpr,
    ZLOSS: tl.constexpr,
    SOFTCAP: tl.constexpr,
    STATS: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
):
    """Rows ``pid, pid + P, pid + 2P, ...`` for a grid of ``P`` programs.

    With one program per SM (a persistent grid) only ~one row per SM is in flight, so the rows
    being read twice fit in L2 and the second read rarely reaches HBM.
    """
    for r in range(tl.program_id(0), n_rows, tl.num_programs(0)):
        _ce_row(
            tl.cast(r, tl.int64), X, sxb, sxc, sxs, G, sgb, sgc, sgs, T, W, CONSTS, GO, LOSS, Z, LSE,
            n_cols, n_inner, ignore_index, eps, z_scale, cap,
            BLOCK, SINGLE, HAS_WEIGHT, SMOOTH, ZLOSS, SOFTCAP, STATS, GRAD, ROW_SCALE,
        )  # fmt: skip
