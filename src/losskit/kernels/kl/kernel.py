"""Triton kernels of the KL divergence and of the distillation losses on logits.

``kl_pointwise_kernel``: :func:`losskit.kl_div` element by element, one pass; loss
``xlogy(t, t) - t x`` (``exp(t) (t - x)`` with ``LOG_TARGET``) and gradient ``-t`` (``-exp(t)``).

``distill_kernel``: one program per row of student logits ``s`` and teacher logits ``t`` with
temperature ``T``: ``u = s / T``, ``v = t / T``, ``p = softmax(u)``, ``q = softmax(v)``.

* KL (``JSD=False``): ``T^2 KL(q || p) = T^2 (sum_j q_j (v_j - u_j) - lse(v) + lse(u))``;
  ``d/ds = T (p - q)``.
* JSD: ``m = beta q + (1 - beta) p``; ``T^2 [beta KL(q || m) + (1 - beta) KL(p || m)]``;
  with ``g_j = (1 - beta) log(p_j / m_j)``, ``d/ds_j = T p_j (g_j - sum_k p_k g_k)``.

Rows of at most ``BLOCK`` classes are read once and kept in registers; longer rows are read in
blocks, twice (KL) or three times (JSD).
"""

import triton
import triton.language as tl

from ..common.kernel import store_elementwise_result


@triton.jit
def kl_pointwise_kernel(
    X,
    T,
    OUT,
    G,
    GO,
    n,
    grad_scale,
    BLOCK: tl.constexpr,
    LOG_TARGET: tl.constexpr,
    LOSS: tl.constexpr,
    REDUCE: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    t = tl.load(T + offs, mask=mask, other=0.0).to(tl.float32)
    if LOG_TARGET:
        et = tl.exp(t)
        loss = et * (t - x)
        grad = -et
    else:
        # xlogy(t, t): 0 at t == 0; NaN for t < 0 (log of a negative), as torch.
        loss = tl.where(t == 0.0, 0.0, t * tl.log(t)) - t * x
        grad = -t
    store_elementwise_result(
        OUT, G, GO, pid, offs, mask, loss, grad, grad_scale, LOSS, REDUCE, GRAD, ROW_SCALE
    )


@triton.jit
def _load_pair(S_row, T_row, cols, ssc, stc, n_cols, inv_temp):
    mask = cols < n_cols
    u = tl.load(S_row + cols * ssc, mask=mask, other=0.0).to(tl.float32) * inv_temp
    v = tl.load(T_row + cols * stc, mask=mask, other=0.0).to(tl.float32) * inv_temp
    u = tl.where(mask, u, float("-inf"))
    v = tl.where(mask, v, float("-inf"))
    return u, v, mask


@triton.jit
def _jsd_terms(u, v, mask, m_s, ls_s, m_t, ls_t, log_beta, log_1mb, beta):
    """Per element: the JSD summand, g = (1 - beta) log(p / m) and p.

    ``log p = (u - max) - log sum``: subtracting a rounded float32 lse from logits near 1e4 would
    lose their fraction."""
    lp = (u - m_s) - ls_s
    lq = (v - m_t) - ls_t
    a = log_beta + lq
    b = log_1mb + lp
    hi = tl.maximum(a, b)
    lm = hi + tl.log(1.0 + tl.exp(-tl.abs(a - b)))
    p = tl.exp(lp)
    q = tl.exp(lq)
    # Where q (or p) underflows to 0 its term is 0, not 0 * (-inf).
    term_q = tl.where(q > 0.0, beta * q * (lq - lm), 0.0)
    term_p = tl.where(p > 0.0, (1.0 - beta) * p * (lp - lm), 0.0)
    # Only read where p > 0 (the gradient is p (g - sum p g)); where student and teacher both
    # mask a class, lm is -inf - (-inf) = NaN and would poison the row's sum.
    g = tl.where(mask & (p > 0.0), (1.0 - beta) * (lp - lm), 0.0)
    return tl.where(mask, term_q + term_p, 0.0), g, tl.where(mask, p, 0.0)


@triton.jit
def distill_kernel(
    S,
    sss,
    ssc,
    T,
    sts,
    stc,
    G,
    sgs,
    sgc,
    LOSS,
    GO,
    n_cols,
    inv_temp,
    t_sq,
    grad_mult,
    beta,
    log_beta,
    log_1mb,
    BLOCK: tl.constexpr,
    SINGLE: tl.constexpr,
    JSD: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
):
    """Row loss into ``LOSS`` and, with ``GRAD``, ``d loss / d s`` times ``grad_mult`` (times
    ``GO[row]`` with ``ROW_SCALE``) into ``G``."""
    row = tl.program_id(0).to(tl.int64)
    S_row = S + row * sss
    T_row = T + row * sts
    G_row = G + row * sgs
    offs = tl.arange(0, BLOCK)
    if GRAD:
        scale = grad_mult
        if ROW_SCALE:
            scale = scale * tl.load(GO + row).to(tl.float32)
    if SINGLE:
        u, v, mask = _load_pair(S_row, T_row, offs, ssc, stc, n_cols, inv_temp)
        m_s = tl.max(u, 0)
        m_t = tl.max(v, 0)
        e_s = tl.exp(u - m_s)
        e_t = tl.exp(v - m_t)
        sum_s = tl.sum(e_s, 0)
        sum_t = tl.sum(e_t, 0)
        ls_s = tl.log(sum_s)
        ls_t = tl.log(sum_t)
        if JSD:
            terms, g, p = _jsd_terms(u, v, mask, m_s, ls_s, m_t, ls_t, log_beta, log_1mb, beta)
            tl.store(LOSS + row, t_sq * tl.sum(terms, 0))
            if GRAD:
                pg = tl.sum(p * g, 0)
                grad = scale * p * (g - pg)
                tl.store(G_row + offs * sgc, grad.to(G.dtype.element_ty), mask=mask)
        else:
            cross = tl.sum(tl.where(e_t > 0.0, e_t * (v - u), 0.0), 0)
            tl.store(LOSS + row, t_sq * (cross / sum_t + (m_s - m_t) + (ls_s - ls_t)))
            if GRAD:
                grad = scale * (e_s / sum_s - e_t / sum_t)
                tl.store(G_row + offs * sgc, grad.to(G.dtype.element_ty), mask=mask)
    else:
        m_s = float("-inf")
        m_t = float("-inf")
        sum_s = 0.0
        sum_t = 0.0
        cross = 0.0
        for start in range(0, n_cols, BLOCK):
            u, v, mask = _load_pair(S_row, T_row, start + offs, ssc, stc, n_cols, inv_temp)
            ms_new = tl.maximum(m_s, tl.max(u, 0))
            mt_new = tl.maximum(m_t, tl.max(v, 0))
            # Shift by 0 while a row has shown only -inf (exp(-inf - (-inf)) is NaN).
            s_shift = tl.where(ms_new == float("-inf"), 0.0, ms_new)
            t_shift = tl.where(mt_new == float("-inf"), 0.0, mt_new)
            sum_s = sum_s * tl.exp(m_s - s_shift) + tl.sum(tl.exp(u - s_shift), 0)
            e_t = tl.exp(v - t_shift)
            rescale_t = tl.exp(m_t - t_shift)
            sum_t = sum_t * rescale_t + tl.sum(e_t, 0)
            if not JSD:
                cross = cross * rescale_t + tl.sum(tl.where(e_t > 0.0, e_t * (v - u), 0.0), 0)
            m_s = ms_new
            m_t = mt_new
        ls_s = tl.log(sum_s)
        ls_t = tl.log(sum_t)
        if JSD:
            total = 0.0
            pg = 0.0
            for start in range(0, n_cols, BLOCK):
                u, v, mask = _load_pair(S_row, T_row, start + offs, ssc, stc, n_cols, inv_temp)
                terms, g, p = _jsd_terms(u, v, mask, m_s, ls_s, m_t, ls_t, log_beta, log_1mb, beta)
                total += tl.sum(terms, 0)
                pg += tl.sum(p * g, 0)
            tl.store(LOSS + row, t_sq * total)
            if GRAD:
                for start in range(0, n_cols, BLOCK):
                    cols = start + offs
                    u, v, mask = _load_pair(S_row, T_row, cols, ssc, stc, n_cols, inv_temp)
                    terms, g, p = _jsd_terms(
                        u, v, mask, m_s, ls_s, m_t, ls_t, log_beta, log_1mb, beta
                    )
                    grad = scale * p * (g - pg)
                    tl.store(G_row + cols * sgc, grad.to(G.dtype.element_ty), mask=mask)
        else:
            tl.store(LOSS + row, t_sq * (cross / sum_t + (m_s - m_t) + (ls_s - ls_t)))
            if GRAD:
                for start in range(0, n_cols, BLOCK):
                    cols = start + offs
                    u, v, mask = _load_pair(S_row, T_row, cols, ssc, stc, n_cols, inv_temp)
                    grad = scale * (tl.exp((u - m_s) - ls_s) - tl.exp((v - m_t) - ls_t))
                    tl.store(G_row + cols * sgc, grad.to(G.dtype.element_ty), mask=mask)
