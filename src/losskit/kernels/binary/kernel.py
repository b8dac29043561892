"""Triton kernel of the element-wise binary losses: BCE with logits and sigmoid focal loss.

One pass reads the logits and the targets once and, for a mean/sum reduction, writes the
gradient scaled by ``1/n`` or 1 next to per-block partial sums of the loss. Per element, with
``ls = log sigmoid(x)``, ``p = sigmoid(x)``:

* BCE: ``loss = w [(1 - y) x - l ls]`` with ``l = 1 + (pw - 1) y``; ``dloss/dx = w (l p - pw y)``.
* focal: ``B = (1 - y) x - ls``, ``q = 1 - p_t = (1 - y) p + y (1 - p)`` with ``p`` and
  ``1 - p`` each from ``exp(-|x|)`` (no cancellation); ``loss = a_t q^gamma B`` and
  ``dloss/dx = a_t (gamma q^gamma (dq/dx) / q B + q^gamma (p - y))``, ``dq/dx = p (1 - p)
  (1 - 2y)``, taken as 0 where ``q = 0``. ``q^gamma`` is a product for integer ``gamma`` (the
  usual 2), ``exp(gamma log q)`` otherwise. Finite for every logit and every ``gamma >= 0``
  (the gradient at ``p_t = 1`` is 0, also for ``gamma < 1``).
"""

import triton
import triton.language as tl

from ..common.kernel import store_elementwise_result


@triton.jit
def _log1p(e):
    # log(1 + e) to full relative precision for small e (Kahan's trick: the rounding of u = 1 + e
    # cancels in log(u) / (u - 1)); log(1.0 + e) alone is 0 for e < 6e-8 in float32.
    u = 1.0 + e
    return tl.where(u == 1.0, e, tl.log(u) * (e / (u - 1.0)))


@triton.jit
def _load_bcast(P, offs, mask, n_last, MODE: tl.constexpr):
    # MODE 0: absent (1), 1: one value per element, 2: one value per index of the last dimension.
    if MODE == 1:
        return tl.load(P + offs, mask=mask, other=0.0).to(tl.float32)
    elif MODE == 2:
        return tl.load(P + offs % n_last, mask=mask, other=0.0).to(tl.float32)
    else:
        return 1.0


@triton.jit
def _binary_loss_grad(
    x,
    y,
    w,
    pw,
    alpha,
    gamma,
    FOCAL: tl.constexpr,
    HAS_PW: tl.constexpr,
    USE_ALPHA: tl.constexpr,
    GAMMA_INT: tl.constexpr,
):
    # One exp and one reciprocal give sigma(x) and sigma(-x) = 1 - sigma(x), both to full
    # relative precision (no 1 - p cancellation).
    e = tl.exp(-tl.abs(x))
    inv = 1.0 / (1.0 + e)
    pos = x >= 0.0
    p = tl.where(pos, inv, e * inv)
    p_neg = tl.where(pos, e * inv, inv)
    # softplus(±x) = -log sigma(∓x) = max(±x, 0) + log1p(e): BCE as (1 - y) softplus(x) +
    # y softplus(-x) keeps a tiny loss's digits, where (1 - y) x - log sigma(x) cancels to 0.
    l1p = _log1p(e)
    sp_pos = tl.maximum(x, 0.0) + l1p
    sp_neg = tl.maximum(-x, 0.0) + l1p
    if FOCAL:
        bce = (1.0 - y) * sp_pos + y * sp_neg
        # q = 1 - p_t = (1 - y) p + y (1 - p): a sum of non-negative terms, exact for hard labels.
        q = (1.0 - y) * p + y * p_neg
        if GAMMA_INT == 0:
            mod = 1.0
            dmod = 0.0  # d mod / dx / mod * ... (unused: gamma = 0)
        else:
            if GAMMA_INT > 0:
                mod_m1 = 1.0  # q ** (gamma - 1) by multiplication
                for _ in tl.static_range(GAMMA_INT - 1):
                    mod_m1 = mod_m1 * q
                mod = mod_m1 * q
            else:
                mod = tl.exp(gamma * tl.log(q))
            # d q^g / dx = g q^g (dq/dx) / q, dq/dx = p (1 - p) (1 - 2 y); 0 where q = 0, where
            # q^g is 0 too (also for gamma < 1: the gradient at p_t = 1 is 0, not NaN).
            dq = p * p_neg * (1.0 - 2.0 * y)
            dmod = tl.where(q > 0.0, gamma * mod * dq / q, 0.0)
        if USE_ALPHA:
            a_t = alpha * y + (1.0 - alpha) * (1.0 - y)
        else:
            a_t = 1.0
        loss = a_t * mod * bce
        grad = a_t * (dmod * bce + mod * (p - y))
    else:
        if HAS_PW:
            loss = (1.0 - y) * sp_pos + pw * y * sp_neg
            grad = (1.0 + (pw - 1.0) * y) * p - pw * y
        else:
            loss = (1.0 - y) * sp_pos + y * sp_neg
            grad = p - y
    return loss * w, grad * w


@triton.jit
def binary_kernel(
    X,
    T,
    W,
    PW,
    OUT,
    G,
    GO,
    n,
    n_last,
    grad_scale,
    alpha,
    gamma,
    BLOCK: tl.constexpr,
    FOCAL: tl.constexpr,
    W_MODE: tl.constexpr,
    PW_MODE: tl.constexpr,
    USE_ALPHA: tl.constexpr,
    LOSS: tl.constexpr,
    REDUCE: tl.constexpr,
    GRAD: tl.constexpr,
    ROW_SCALE: tl.constexpr,
    GAMMA_INT: tl.constexpr,
):
    """``LOSS``: per-element loss into ``OUT`` (or, with ``REDUCE``, the block's sum into
    ``OUT[pid]``). ``GRAD``: the gradient into ``G``, times ``grad_scale`` or, with
    ``ROW_SCALE``, times the per-element upstream gradient ``GO``."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(T + offs, mask=mask, other=0.0).to(tl.float32)
    w = _load_bcast(W, offs, mask, n_last, W_MODE)
    pw = _load_bcast(PW, offs, mask, n_last, PW_MODE)
    loss, grad = _binary_loss_grad(
        x, y, w, pw, alpha, gamma, FOCAL, PW_MODE != 0, USE_ALPHA, GAMMA_INT
    )
    store_elementwise_result(
        OUT, G, GO, pid, offs, mask, loss, grad, grad_scale, LOSS, REDUCE, GRAD, ROW_SCALE
    )
