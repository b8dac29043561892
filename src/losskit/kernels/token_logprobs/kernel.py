"""Triton kernel of one chunk of :func:`losskit.lm.token_logprobs` (one program per row).

The chunk's logits ``a`` (rows x V, the matmul dtype) are turned into ``z = cap(scale * a) / T``
(``cap(v) = c tanh(v / c)`` when ``SOFTCAP``) and read in vocabulary tiles of ``BLOCK``, with float32
arithmetic whatever the storage dtype.

Statistics pass (``GRAD=False``), an online log-sum-exp over the tiles: per row the running max
``m``, ``s = sum_v exp(z_v - m)`` and ``u = sum_v exp(z_v - m) (z_v - m)`` (rescaled when ``m``
grows; relative to ``m`` so that logits near 1e4 lose nothing to cancellation). It stores
``(m, log s, d = u / s)`` per row and::

    log p(y) = (z_y - m) - log s          H = log s - d          (E_p[z] = m + d)

Gradient pass (``GRAD=True``), with the saved statistics and the upstream gradients ``g1`` (of the
log-probability) and ``g2`` (of the entropy), writes over the logits themselves::

    dL/dz_v = g1 ([v = y] - p_v) - g2 p_v ((z_v - m) - d),   p_v = exp((z_v - m) - log s)
    dL/da_v = dL/dz_v * (1 - (cap(v)/c)^2 if SOFTCAP) * scale / T

An ignored row (token < 0) gives zeros without reading its logits.
"""

import triton
import triton.language as tl


@triton.jit
def _transform(a, scale, cap, inv_t, SOFTCAP: tl.constexpr):
    """``(cap(scale * a) / T, cap(scale * a) / c)``; the second is 0 without ``SOFTCAP``."""
    v = a * scale
    tc = v * 0.0
    if SOFTCAP:
        # tanh from one exp; exp overflowing to inf gives exactly +-1.
        tc = 1.0 - 2.0 / (tl.exp(2.0 * v / cap) + 1.0)
        v = cap * tc
    return v * inv_t, tc


@triton.jit
def token_logprobs_kernel(
    A,
    sar,
    sac,
    Y,
    G1,
    G2,
    STATS,
    LOGP,
    ENT,
    n_cols,
    scale,
    cap,
    inv_t,
    BLOCK: tl.constexpr,
    SOFTCAP: tl.constexpr,
    GRAD: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    a_row = A + row * sar
    y = tl.load(Y + row).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    if y < 0:  # ignored position
        if GRAD:
            zero = tl.zeros([BLOCK], dtype=A.dtype.element_ty)
            for start in range(0, n_cols, BLOCK):
                cols = start + offs
                tl.store(a_row + cols * sac, zero, mask=cols < n_cols)
        else:
            tl.store(STATS + 3 * row, 0.0)
            tl.store(STATS + 3 * row + 1, 0.0)
            tl.store(STATS + 3 * row + 2, 0.0)
            tl.store(LOGP + row, 0.0)
            tl.store(ENT + row, 0.0)
    elif GRAD:
        m = tl.load(STATS + 3 * row)
        log_s = tl.load(STATS + 3 * row + 1)
        d = tl.load(STATS + 3 * row + 2)
        g1 = tl.load(G1 + row)
        g2 = tl.load(G2 + row)
        factor = scale * inv_t
        for start in range(0, n_cols, BLOCK):
            cols = start + offs
            mask = cols < n_cols
            a = tl.load(a_row + cols * sac, mask=mask, other=0.0).to(tl.float32)
            z, tc = _transform(a, scale, cap, inv_t, SOFTCAP)
            zm = z - m
            p = tl.exp(zm - log_s)
            dz = tl.where(cols == y, g1, 0.0) - p * (g1 + g2 * (zm - d))
            # A -inf logit (a masked entry) has p = 0 and zm = -inf: gradient 0, not 0 * inf.
            dz = tl.where(zm == float("-inf"), 0.0, dz)
            if SOFTCAP:
                dz = dz * (1.0 - tc * tc)
            dz = dz * factor
            tl.store(a_row + cols * sac, dz.to(A.dtype.element_ty), mask=mask)
    else:
        m = float("-inf")
        s = 0.0
        u = 0.0
        for start in range(0, n_cols, BLOCK):
            cols = start + offs
            mask = cols < n_cols
            a = tl.load(a_row + cols * sac, mask=mask, other=0.0).to(tl.float32)
            z, _ = _transform(a, scale, cap, inv_t, SOFTCAP)
            z = tl.where(mask, z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, 0))
            # While every logit so far is -inf, shift by 0: exp(-inf - (-inf)) would be NaN.
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            r = tl.exp(m - shift)
            e = tl.exp(z - shift)
            ez = tl.where(e > 0.0, e * (z - shift), 0.0)
            u = r * (u + tl.where(s > 0.0, (m - shift) * s, 0.0)) + tl.sum(ez, 0)
            s = s * r + tl.sum(e, 0)
            m = m_new
        log_s = tl.log(s)
        d = u / s
        a_y = tl.load(a_row + y * sac).to(tl.float32)
        z_y, _ = _transform(a_y, scale, cap, inv_t, SOFTCAP)
        tl.store(STATS + 3 * row, m)
        tl.store(STATS + 3 * row + 1, log_s)
        tl.store(STATS + 3 * row + 2, d)
        tl.store(LOGP + row, (z_y - m) - log_s)
        tl.store(ENT + row, log_s - d)
