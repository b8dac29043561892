"""Knowledge distillation for language models without the full logits of both models.

:func:`linear_distillation_loss` takes the student's and the teacher's final hidden states and
output embeddings and makes their logits a block of rows at a time (never both ``N x V``
matrices); :func:`topk_distillation_loss` distils from an offline teacher that returned only its
top-k log-probabilities per position (a served model), the rest of its distribution as one bucket.
"""

from __future__ import annotations

import math

import torch

from .._autograd import detach_unless_grad, first_order_only, functorch_active
from .._checks import (
    check_class_indices,
    check_floating,
    check_int,
    check_number,
    check_same_device,
    check_tensor,
)
from .._chunked_linear import MIN_CHUNKS, _is_one, default_chunk_bytes
from .._dispatch import Backends
from .._precision import compute_dtype
from .._reduction import check_reduction
from ..distillation import check_temperature
from .preference import check_choice

__all__ = ["linear_distillation_loss", "topk_distillation_loss"]

DIVERGENCES = ("kl", "reverse_kl", "jsd", "tvd")
# Bytes of one block: both models' logits for its rows and the elementwise scratch buffers (None:
# the linear cross entropy's chunk budget, 32 MiB on the CPU: 120 rows at V = 32768). The matrix
# products run on whole blocks: every product repacks the whole weight, so thin ones are slow
# (the products of 16-row blocks took 2.5x the time of 128-row ones), and each block adds into
# the weight gradient once. The elementwise work runs on sub-blocks of the block, with scratch buffers of
# _SUB_BYTES each (two to four of them) that stay in cache. Measured in
# benchmarks/bench_distill_cpu.py.
_BLOCK_BYTES: int | None = None
_SUB_BYTES = 1 << 20


# ---------------------------------------------------------------- one block of rows


def _bucket_terms(
    ls: torch.Tensor, lt: torch.Tensor, divergence: str, beta: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row divergence between bucket distributions given by log-probabilities ``ls``
    (student) and ``lt`` (teacher), and ``g = dD/dS`` per bucket (``None`` for ``kl``, whose
    gradient is written directly)."""
    s, t = torch.exp(ls), torch.exp(lt)
    zero = ls.new_zeros(())
    if divergence == "kl":  # KL(t || s)
        return torch.where(t > 0, t * (lt - ls), zero).sum(-1), None
    if divergence == "reverse_kl":  # KL(s || t)
        return torch.where(s > 0, s * (ls - lt), zero).sum(-1), ls - lt + 1.0
    if divergence == "tvd":
        return 0.5 * (s - t).abs().sum(-1), 0.5 * torch.sign(s - t)
    # jsd: m = beta t + (1 - beta) s (TRL's generalised JSD); dD/ds = (1 - beta) log(s / m)
    lm = torch.logaddexp(lt + math.log(beta), ls + math.log1p(-beta))
    value = beta * torch.where(t > 0, t * (lt - lm), zero) + (1 - beta) * torch.where(
        s > 0, s * (ls - lm), zero
    )
    return value.sum(-1), (1 - beta) * torch.where(s > 0, ls - lm, zero)


def _block(
    zs: torch.Tensor,
    teacher: tuple[torch.Tensor, ...],
    topk: bool,
    y: torch.Tensor | None,
    keep: torch.Tensor,
    divergence: str,
    beta: float,
    temperature: float,
    hard_weight: float,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Row losses of one block and, if asked, their gradient with respect to the student logits."""
    zs = zs.to(compute_dtype(zs.dtype))
    ls = torch.log_softmax(zs / temperature, dim=-1)
    s = torch.exp(ls)
    if topk:
        lt_top, ids = teacher
        lt_top = lt_top.to(ls.dtype)
        ls_top = ls.gather(1, ids)
        rest = torch.ones_like(ls, dtype=torch.bool).scatter_(1, ids, False)
        ls_rest = torch.logsumexp(ls.masked_fill(~rest, -torch.inf), dim=1, keepdim=True)
        t_rest = (1.0 - torch.exp(lt_top).sum(1, keepdim=True)).clamp(min=0.0)
        if ids.shape[1] == ls.shape[1]:  # no token outside the top-k: the tail holds nothing
            t_rest = torch.zeros_like(t_rest)
        lb_s = torch.cat([ls_top, ls_rest], 1)
        lb_t = torch.cat([lt_top, torch.log(t_rest)], 1)
    else:
        (zt,) = teacher
        lb_s, lb_t = ls, torch.log_softmax(zt.to(ls.dtype) / temperature, dim=-1)
    soft, g = _bucket_terms(lb_s, lb_t, divergence, beta)
    rows = soft
    if hard_weight > 0.0:
        l1 = ls if temperature == 1.0 else torch.log_softmax(zs, dim=-1)
        hard = -l1.gather(1, y.unsqueeze(1)).squeeze(1)
        rows = (1.0 - hard_weight) * soft + hard_weight * hard
    rows = torch.where(keep, rows, rows.new_zeros(()))
    if not want_grad:
        return rows, None
    # dD/du, u = zs / T: s_k (g_b(k) - <S, g>) over buckets b; for kl s_k - T_b s_k / S_b.
    if topk:
        share = torch.exp(ls - ls_rest)  # s_k / S_rest, replaced below for the top-k tokens
        share.scatter_(1, ids, 1.0)
        t_b = torch.exp(lb_t)
        if g is None:
            grad = s - share * t_b[:, -1:]
            grad.scatter_(1, ids, (s.gather(1, ids) - t_b[:, :-1]))
        else:
            mean_g = (torch.exp(lb_s) * g).sum(1, keepdim=True)
            full = g[:, -1:].expand_as(s).clone().scatter_(1, ids, g[:, :-1])
            grad = s * (full - mean_g)
        del share
    elif g is None:
        grad = s - torch.exp(lb_t)
    else:
        grad = s * (g - (s * g).sum(1, keepdim=True))
    grad = grad * ((1.0 - hard_weight) / temperature)
    if hard_weight > 0.0:
        p1 = s if temperature == 1.0 else torch.exp(l1)
        hard_grad = p1 * hard_weight
        hard_grad.scatter_add_(1, y.unsqueeze(1), torch.full_like(hard_grad[:, :1], -hard_weight))
        grad = grad + hard_grad
    return rows, grad * keep.unsqueeze(1)


# ---------------------------------------------------------------- one sub-block, in place


def _rowdot(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(1)``, the product written into the scratch buffer ``out`` (``bmm`` of rows
    is 8x slower on the CPU)."""
    return torch.mul(a, b, out=out).sum(1)


def _full_sub(
    a: torch.Tensor,
    b: torch.Tensor,
    y: torch.Tensor | None,
    c: torch.Tensor | None,
    work: tuple[torch.Tensor, ...],
    divergence: str,
    beta: float,
    temperature: float,
    hard_weight: float,
) -> torch.Tensor:
    """Row losses of full-vocabulary logits ``a`` (student) and ``b`` (teacher).

    Both are the pass's own buffers and are overwritten; ``work`` holds two (three for ``jsd``,
    one more with the hard term) scratch buffers of the same shape. With ``c`` (per-row upstream
    gradient, ignored rows 0) ``a`` ends holding ``c * d row / d z_s``: every step writes into
    these buffers, so a sub-block allocates nothing of its size.
    """
    w1, w2 = work[0], work[1]
    hard = None
    if hard_weight > 0.0:  # the cross entropy at temperature 1, and its gradient into work[-1]
        h = torch.log_softmax(a, 1, out=work[-1])
        hard = -h.gather(1, y.unsqueeze(1)).squeeze(1)
        if c is not None:
            ch = (c * hard_weight).unsqueeze(1)
            h.exp_().mul_(ch).scatter_add_(1, y.unsqueeze(1), -ch)
    if temperature != 1.0:
        a.div_(temperature)
        b.div_(temperature)
    ls = torch.log_softmax(a, 1, out=w1)
    lt = torch.log_softmax(b, 1, out=w2)
    # g: the factor of dD/du (u = z_s / T) in the gradient with respect to z_s.
    g = None if c is None else (c * ((1.0 - hard_weight) / temperature)).unsqueeze(1)
    if divergence == "kl":  # sum t (lt - ls); dD/du = s - t
        t = torch.exp(lt, out=b)
        rows = _rowdot(t, lt.sub_(ls), out=w2)
        if g is not None:
            torch.exp(ls, out=a).sub_(t).mul_(g)
    elif divergence == "reverse_kl":  # sum s (ls - lt); dD/du = s (ls - lt - D)
        s = torch.exp(ls, out=a)
        d = ls.sub_(lt)
        rows = _rowdot(s, d, out=w2)
        if g is not None:
            s.mul_(d.sub_(rows.unsqueeze(1))).mul_(g)
    elif divergence == "tvd":  # sum |s - t| / 2; dD/du = s (sign(s - t) - <s, sign(s - t)>) / 2
        s, t = torch.exp(ls, out=a), torch.exp(lt, out=b)
        diff = t.sub_(s)  # t - s
        rows = 0.5 * torch.abs(diff, out=w2).sum(1)
        if g is not None:
            sg = torch.sign(diff, out=w1)  # sign(t - s)
            s.mul_(sg.sub_(_rowdot(s, sg, out=w2).unsqueeze(1))).mul_(-0.5 * g)
    else:  # jsd, m = beta t + (1 - beta) s; dD/du = (1 - beta) s (log(s/m) - <s, log(s/m)>)
        lb, l1b = math.log(beta), math.log1p(-beta)
        s, t = torch.exp(ls, out=a), torch.exp(lt, out=b)
        lt.add_(lb - l1b)
        lm = torch.logaddexp(ls, lt, out=work[2])  # log(m / (1 - beta))
        ds, dt = ls.sub_(lm), lt.sub_(lm)  # log((1 - beta) s / m), log(beta t / m)
        tv = _rowdot(t, dt, out=work[2])
        sv = _rowdot(s, ds, out=w2)
        rows = beta * (tv - lb) + (1.0 - beta) * (sv - l1b)
        if g is not None:
            s.mul_(ds.sub_(sv.unsqueeze(1))).mul_((1.0 - beta) * g)
    if hard is not None:
        rows = (1.0 - hard_weight) * rows + hard_weight * hard
        if c is not None:
            a.add_(work[-1])
    return rows


def _topk_sub(
    a: torch.Tensor,
    teacher: tuple[torch.Tensor, torch.Tensor],
    keep: torch.Tensor,
    c: torch.Tensor | None,
    divergence: str,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """Row losses against top-k teacher buckets; with ``c``, ``a`` ends holding the gradient."""
    rows, grad = _block(a, teacher, True, None, keep, divergence, beta, temperature, 0.0,
                        c is not None)  # fmt: skip
    if c is not None:
        torch.mul(grad, c.unsqueeze(1), out=a)
    return rows


# ---------------------------------------------------------------- the pass over the blocks


def _logits(x: torch.Tensor, w: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` (or ``x`` itself, copied) written into ``out``, the pass's block buffer."""
    if w is None:
        return out.copy_(x)
    if x.dtype == out.dtype:
        return torch.mm(x, w.t(), out=out)
    return out.copy_(torch.mm(x, w.t()))  # half inputs: the product in their dtype, as autocast


def _pass(
    x: torch.Tensor,
    w: torch.Tensor | None,
    t0: torch.Tensor,
    t1: torch.Tensor,
    y: torch.Tensor | None,
    keep: torch.Tensor,
    opts: tuple,
    coef: torch.Tensor | None,
    want: tuple[bool, bool],
    want_loss: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """One pass over the row blocks: the row losses (if ``want_loss``) and, given ``coef`` (a
    scalar or one value per row), the gradients in ``want`` (of ``x``, ``w``) of
    ``sum(coef * rows)``.

    A block's logits are written by the matrix products into two buffers made once for the
    pass (student, teacher); the elementwise work runs on sub-blocks of them with scratch
    buffers of a sub-block's size, and leaves the logits' gradient in the student's buffer, which
    is multiplied at once into the gradient of ``x`` (its rows) and added into that of ``w``.
    """
    topk, divergence, beta, temperature, hard_weight, _, rows_per, sub_rows = opts
    n = x.shape[0]
    vocab = x.shape[1] if w is None else w.shape[0]
    acc = compute_dtype(x.dtype)
    dev = x.device
    if coef is None:
        want = (False, False)
    gx = torch.empty(x.shape, dtype=x.dtype, device=dev) if want[0] else None
    # float32 accumulation for half weights; written by the first block's product (beta=0).
    gw = torch.empty(w.shape, dtype=acc, device=dev) if want[1] else None
    if n == 0:
        if gw is not None:
            gw.zero_()
        return (torch.empty(0, dtype=acc, device=dev) if want_loss else None), gx, gw
    rows_out = torch.empty(n, dtype=acc, device=dev) if want_loss else None
    if coef is not None:
        coef = coef.to(acc)
    per_row = coef is not None and coef.dim() > 0
    sa = torch.empty((min(rows_per, n), vocab), dtype=acc, device=dev)
    sb = None if topk else torch.empty_like(sa)
    n_work = 2 + (divergence == "jsd") + (hard_weight > 0.0)
    sub = min(sub_rows, sa.shape[0])
    work = () if topk else tuple(torch.empty((sub, vocab), dtype=acc, device=dev)
                                  for _ in range(n_work))  # fmt: skip
    for r0 in range(0, n, rows_per):
        r1 = min(r0 + rows_per, n)
        a = _logits(x[r0:r1], w, sa[: r1 - r0])
        b = None if topk else _logits(t0[r0:r1], t1, sb[: r1 - r0])
        for i0 in range(r0, r1, sub):
            i1 = min(i0 + sub, r1)
            ai = a[i0 - r0 : i1 - r0]
            c = None
            if coef is not None:
                c = torch.where(keep[i0:i1], coef[i0:i1] if per_row else coef, 0.0)
            if topk:
                rows = _topk_sub(ai, (t0[i0:i1], t1[i0:i1]), keep[i0:i1], c, divergence, beta,
                                 temperature)  # fmt: skip
            else:
                rows = _full_sub(
                    ai, b[i0 - r0 : i1 - r0], None if y is None else y[i0:i1], c,
                    tuple(t[: i1 - i0] for t in work), divergence, beta, temperature,
                    hard_weight,
                )  # fmt: skip
            if rows_out is not None:
                rows_out[i0:i1] = torch.where(keep[i0:i1], rows, 0.0)
        if any(want):
            _accumulate(a, x[r0:r1], w, gx, gw, r0, r1)
    return rows_out, gx, gw


def _accumulate(
    g: torch.Tensor,
    xr: torch.Tensor,
    w: torch.Tensor | None,
    gx: torch.Tensor | None,
    gw: torch.Tensor | None,
    r0: int,
    r1: int,
) -> None:
    """Multiply one block's logits gradient ``g`` into the gradients of ``x`` and ``w``."""
    if w is None:  # x are the student's logits themselves
        if gx is not None:
            gx[r0:r1].copy_(g)
        return
    if gx is not None:
        if g.dtype == gx.dtype:
            torch.mm(g, w, out=gx[r0:r1])
        else:  # half inputs: the product in their dtype
            gx[r0:r1].copy_(g.to(w.dtype) @ w)
    if gw is None:
        return
    if xr.dtype == gw.dtype:
        gw.addmm_(g.t(), xr, beta=0.0 if r0 == 0 else 1.0)  # in place: no weight-sized temporary
    else:  # half inputs: the product in float32 (addmm_ cannot mix dtypes)
        gw.addmm_(g.t(), xr.to(gw.dtype), beta=0.0 if r0 == 0 else 1.0)


class _DistillFunction(torch.autograd.Function):
    """Row-blocked distillation with gradients for the student's input (and weight).

    ``x`` is the student's hidden states with ``w`` its weight, or its logits with ``w`` None.
    For ``mean``/``sum`` the gradients are computed in the forward, in the pass that computes the
    loss (no recomputation); for ``none`` (or a second backward with ``retain_graph``) the
    backward makes each block again. The teacher (``t0``, ``t1``) gets no gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor | None,
        t0: torch.Tensor,
        t1: torch.Tensor,
        y: torch.Tensor | None,
        keep: torch.Tensor,
        opts: tuple,
    ) -> torch.Tensor:
        reduction = opts[5]
        needs = ctx.needs_input_grad
        want = (bool(needs[0]), w is not None and bool(needs[1]))
        count = keep.sum().to(compute_dtype(x.dtype))
        # 0 where nothing is kept: those rows' gradients are 0 (0 * inf would be NaN).
        scale = torch.where(count != 0, 1.0 / count, 0.0) if reduction == "mean" else None
        fused = reduction != "none" and any(want)
        coef = None
        if fused:
            coef = count.new_ones(()) if scale is None else scale
        rows, gx, gw = _pass(x, w, t0, t1, y, keep, opts, coef, want if fused else (False, False))
        ctx.save_for_backward(x, w, t0, t1, y, keep, scale)
        ctx.opts, ctx.want = opts, want
        ctx.grads = (gx, gw) if fused else None
        if reduction == "none":
            return rows
        total = rows.sum()
        return total / count if reduction == "mean" else total

    @staticmethod
    @first_order_only("linear_distillation_loss", "no double backward through the blocks")
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, w, t0, t1, y, keep, scale = ctx.saved_tensors
        go = grad_out.to(compute_dtype(x.dtype))
        grads, ctx.grads = ctx.grads, None  # handed over once; a second backward recomputes
        if grads is None:
            coef = go if scale is None else go * scale
            _, gx, gw = _pass(x, w, t0, t1, y, keep, ctx.opts, coef, ctx.want, want_loss=False)
        else:  # made in the forward; scaled in place (a copy would double the weight gradient)
            gx, gw = grads
            if not _is_one(go):
                for g in (gx, gw):
                    if g is not None:
                        g.mul_(go.to(g.dtype))
        gw = None if gw is None else gw.to(w.dtype)
        return (gx, gw) + (None,) * 5


def _plain(
    x: torch.Tensor,
    w: torch.Tensor | None,
    t0: torch.Tensor,
    t1: torch.Tensor,
    y: torch.Tensor | None,
    keep: torch.Tensor,
    opts: tuple[bool, str, float, float, float, str, int],
) -> torch.Tensor:
    """Unblocked, through autograd: under torch.func transforms (no custom Function there)."""
    topk, divergence, beta, temperature, hard_weight, reduction, *_ = opts
    zs = x if w is None else x @ w.t()
    teacher = (t0, t1) if topk else (t0 @ t1.t(),)  # detached: a constant
    rows, _ = _block(zs, teacher, topk, y, keep, divergence, beta, temperature, hard_weight, False)
    return _reduce(rows, keep, reduction)


def _reduce(rows: torch.Tensor, keep: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return rows
    total = rows.sum()
    return total / keep.sum() if reduction == "mean" else total


def _blocked(
    x: torch.Tensor,
    w: torch.Tensor | None,
    t0: torch.Tensor,
    t1: torch.Tensor,
    y: torch.Tensor | None,
    keep: torch.Tensor,
    opts: tuple[bool, str, float, float, float, str, int],
) -> torch.Tensor:
    if functorch_active():
        return _plain(x, w, t0, t1, y, keep, opts)
    # Detached unless autograd tracks them: under no_grad, or with a frozen student weight, the
    # pass then computes no gradient (and skips that matrix product).
    x = detach_unless_grad(x)
    w = None if w is None else detach_unless_grad(w)
    return _DistillFunction.apply(x, w, t0, t1, y, keep, opts)


_LINEAR_DISTILL = Backends("linear_distillation_loss", formula=_blocked)
_TOPK_DISTILL = Backends("topk_distillation_loss", formula=_blocked)


# ---------------------------------------------------------------- argument checks


def _check_beta(beta: object, divergence: str) -> float:
    b = check_number("beta", beta)
    if divergence == "jsd" and not (0.0 < b < 1.0):
        raise ValueError(
            f"beta must be in (0, 1) for divergence='jsd', got {beta!r} (beta -> 0 is 'kl', "
            "beta -> 1 'reverse_kl')"
        )
    return b


def _check_labels(
    labels: object, lead: tuple[int, ...], like: torch.Tensor, vocab: int, ignore_index: int
) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = check_tensor("labels", labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of token ids, got dtype {labels.dtype}")
    check_same_device("labels", labels, like, "student_hidden")
    if tuple(labels.shape) != lead:
        raise ValueError(f"labels must have shape {lead}, got {tuple(labels.shape)}")
    check_class_indices(labels, vocab, ignore_index)
    return labels


def _block_rows(
    n: int, vocab: int, dtypes: tuple[torch.dtype, ...], n_scratch: int, device: torch.device
) -> tuple[int, int]:
    """Rows of one block and of one sub-block: the block's logits (one float32-or-wider buffer
    per entry of ``dtypes``, plus the copy a half-precision product makes) and ``n_scratch``
    sub-block buffers within the byte budget (at least one row each)."""
    acc = compute_dtype(dtypes[0]).itemsize
    cols = max(vocab, 1)
    sub = max(1, _SUB_BYTES // (cols * acc))
    budget = _BLOCK_BYTES if _BLOCK_BYTES is not None else default_chunk_bytes(device)
    per_row = cols * sum(acc + (d.itemsize if d.itemsize < acc else 0) for d in dtypes)
    rows = (budget - n_scratch * sub * cols * acc) // per_row
    rows = max(1, min(rows, -(-max(n, 1) // MIN_CHUNKS)))
    return rows, min(sub, rows)


def _finish(
    backends: Backends,
    x: torch.Tensor,
    w: torch.Tensor | None,
    t0: torch.Tensor,
    t1: torch.Tensor,
    labels: torch.Tensor | None,
    lead: tuple[int, ...],
    opts: tuple,
    ignore_index: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    y = None if labels is None else labels.reshape(-1)
    keep = (
        torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if y is None
        else y != ignore_index
    )
    safe = None if y is None else torch.where(keep, y, 0).long()
    out = backends(x, w, t0, t1, safe, keep, opts)
    if opts[5] == "none":
        out = out.reshape(lead)
    return out.to(out_dtype)


# ---------------------------------------------------------------- public functions


def linear_distillation_loss(
    student_hidden: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_weight: torch.Tensor,
    *,
    divergence: str = "kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    labels: torch.Tensor | None = None,
    hard_weight: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Distillation loss between two language models' heads, from their hidden states.

    With :math:`s = \mathrm{softmax}(h_s W_s^\top / T)` and :math:`t = \mathrm{softmax}(h_t
    W_t^\top / T)` per position, the soft term :math:`D(s, t)` is

    ===============  ==================================================================
    ``kl``           :math:`\mathrm{KL}(t\|s) = \sum_v t_v \log(t_v / s_v)` (forward KL)
    ``reverse_kl``   :math:`\mathrm{KL}(s\|t)`
    ``jsd``          :math:`\beta\,\mathrm{KL}(t\|m) + (1-\beta)\,\mathrm{KL}(s\|m)`,
                     :math:`m = \beta t + (1-\beta) s` (TRL's generalised JSD)
    ``tvd``          :math:`\tfrac12 \sum_v |s_v - t_v|`
    ===============  ==================================================================

    and per position :math:`\ell = (1 - \alpha) D(s, t) + \alpha\,\mathrm{CE}(h_s W_s^\top, y)`
    with :math:`\alpha` = ``hard_weight`` (the cross entropy at temperature 1 against
    ``labels``; nothing is mixed in unless asked: ``hard_weight=0`` is the pure soft loss).

    The logits are made a block of rows at a time, both models' blocks within 32 MiB on the CPU
    (120 rows at V = 32768; 512 MiB on CUDA), so neither model's ``N x V`` logits exist: the
    extra memory is the student's gradients and one block. The teacher is a constant (no
    gradient, even if its tensors require one); a student weight that requires no gradient
    (frozen) skips its product. For ``mean`` and ``sum`` the student's gradients are computed in
    the forward, in the same pass as the loss (no recomputation); with ``none`` the backward
    makes the blocks again.

    Args:
        student_hidden: ``(..., H_s)``; gradient flows here.
        student_weight: ``(V, H_s)``; gradient flows here.
        teacher_hidden: ``(..., H_t)`` (same leading shape).
        teacher_weight: ``(V, H_t)`` (same vocabulary).
        divergence: one of the rows above.
        beta: :math:`\beta \in (0, 1)` for ``jsd`` (ignored otherwise).
        temperature: :math:`T > 0`, applied to both models' logits.
        ignore_index: a ``labels`` value whose position is left out (both terms).
        labels: ``(...)`` token ids: which positions count, and the targets of the hard term;
            ``None`` counts every position (then ``hard_weight`` must be 0).
        hard_weight: :math:`\alpha \in [0, 1]`.
        reduction: ``"mean"`` (over the counted positions), ``"sum"`` or ``"none"`` (the leading
            shape; 0 at ignored positions).

    Returns:
        Scalar, or the leading shape; dtype of ``student_hidden`` (computed in float32 at least).

    Edge cases: every position ignored gives NaN for ``mean`` (0 / 0, as torch's cross entropy)
    and 0 for ``sum``; a teacher probability of 0 contributes 0 to ``kl``.

    Example:
        >>> hs = torch.randn(2, 8, 32, requires_grad=True)
        >>> ws = torch.randn(500, 32, requires_grad=True)
        >>> ht, wt = torch.randn(2, 8, 64), torch.randn(500, 64)
        >>> losskit.lm.linear_distillation_loss(hs, ws, ht, wt, divergence="jsd").backward()

    References: Hinton et al. 2015; Agarwal et al., "On-Policy Distillation of Language Models"
    (GKD), 2024. Like TRL's ``GKDTrainer.generalized_jsd_loss`` and Liger-Kernel's fused linear
    JSD, the loss is *not* multiplied by :math:`T^2` (:func:`losskit.distillation_kl_div` is);
    TRL's ``beta=0``/``1`` are ``divergence="kl"``/``"reverse_kl"`` here.
    """
    xs = check_floating("student_hidden", student_hidden)
    ws = check_floating("student_weight", student_weight)
    xt = check_floating("teacher_hidden", teacher_hidden)
    wt = check_floating("teacher_weight", teacher_weight)
    for name, t in (("student_weight", ws), ("teacher_hidden", xt), ("teacher_weight", wt)):
        check_same_device(name, t, xs, "student_hidden")
    if xs.dim() < 1 or ws.dim() != 2 or ws.shape[1] != xs.shape[-1]:
        raise ValueError(
            f"student_weight must be (V, H_s) with H_s = student_hidden.shape[-1]; got "
            f"student_hidden {tuple(xs.shape)} and student_weight {tuple(ws.shape)}"
        )
    if wt.dim() != 2 or wt.shape[1] != xt.shape[-1] or wt.shape[0] != ws.shape[0]:
        raise ValueError(
            f"teacher_weight must be (V, H_t) with V = {ws.shape[0]} (the student's vocabulary) "
            f"and H_t = teacher_hidden.shape[-1]; got teacher_hidden {tuple(xt.shape)} and "
            f"teacher_weight {tuple(wt.shape)}"
        )
    if xt.shape[:-1] != xs.shape[:-1]:
        raise ValueError(
            f"teacher_hidden must have the leading shape of student_hidden "
            f"{tuple(xs.shape[:-1])}, got {tuple(xt.shape[:-1])}"
        )
    if ws.dtype != xs.dtype or wt.dtype != xt.dtype:
        raise TypeError(
            "each model's weight must have the dtype of its hidden states; got student "
            f"{xs.dtype}/{ws.dtype}, teacher {xt.dtype}/{wt.dtype}"
        )
    divergence = check_choice("divergence", divergence, DIVERGENCES)
    beta = _check_beta(beta, divergence)
    temperature = check_temperature(temperature)
    ignore_index = check_int("ignore_index", ignore_index)
    hard_weight = _check_hard_weight(hard_weight, labels)
    reduction = check_reduction(reduction)
    lead = tuple(xs.shape[:-1])
    labels = _check_labels(labels, lead, xs, ws.shape[0], ignore_index)
    scratch = 2 + (divergence == "jsd") + (hard_weight > 0.0)
    blocks = _block_rows(math.prod(lead), ws.shape[0], (xs.dtype, xt.dtype), scratch, xs.device)
    opts = (False, divergence, beta, temperature, hard_weight, reduction, *blocks)
    return _finish(
        _LINEAR_DISTILL, xs.reshape(-1, xs.shape[-1]), ws, xt.reshape(-1, xt.shape[-1]).detach(),
        wt.detach(), labels, lead, opts, ignore_index, xs.dtype,
    )  # fmt: skip


linear_distillation_loss.backends = _LINEAR_DISTILL


def _check_hard_weight(hard_weight: object, labels: object) -> float:
    a = check_number("hard_weight", hard_weight)
    if not (0.0 <= a <= 1.0):
        raise ValueError(f"hard_weight must be in [0, 1], got {hard_weight!r}")
    if a > 0.0 and labels is None:
        raise ValueError(f"hard_weight={hard_weight!r} needs labels (the hard targets)")
    return a


def topk_distillation_loss(
    student_logits: torch.Tensor,
    teacher_topk_logprobs: torch.Tensor,
    teacher_topk_ids: torch.Tensor,
    *,
    student_weight: torch.Tensor | None = None,
    divergence: str = "kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    labels: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Distillation from an offline teacher that gave only its top-k log-probabilities.

    Both distributions are compared over :math:`k + 1` buckets: the teacher's :math:`k` tokens,
    and "every other token" as one bucket. The teacher's buckets are
    :math:`t_j = e^{\ell_j}` (its log-probabilities as given) and :math:`t_{rest} = \max(0, 1 -
    \sum_j t_j)`; the student's are its softmax :math:`s = \mathrm{softmax}(z / T)` at those
    tokens and :math:`s_{rest} = \sum_{v \notin \text{top-}k} s_v` (a
    log-sum-exp, no cancellation). The divergence (as :func:`linear_distillation_loss`: ``kl`` is
    :math:`\mathrm{KL}(t\|s)`, ...) is taken between these two :math:`(k+1)`-bucket distributions.
    With the tail bucket the loss is a true divergence (0 only when the student matches the
    teacher's top-k and their total), unlike renormalising the top-k alone, which ignores how much
    mass the student puts elsewhere.

    Args:
        student_logits: ``(..., V)`` the student's logits, or with ``student_weight`` its hidden
            states ``(..., H)`` (then the logits are made a block of rows at a time).
        teacher_topk_logprobs: ``(..., k)`` the teacher's log-probabilities of its top-k tokens
            (natural log, at the temperature you want to distil at: they are used as given).
        teacher_topk_ids: ``(..., k)`` their token ids (distinct per position).
        student_weight: optional ``(V, H)`` output embedding of the student.
        divergence: ``"kl"``, ``"reverse_kl"``, ``"jsd"`` or ``"tvd"``.
        beta: for ``jsd``, in ``(0, 1)``.
        temperature: :math:`T > 0`, applied to the student's logits only.
        ignore_index: a ``labels`` value whose position is left out.
        labels: optional ``(...)`` ids, used only to leave positions out.
        reduction: ``"mean"`` (over counted positions), ``"sum"`` or ``"none"``.

    Returns:
        Scalar, or the leading shape; dtype of ``student_logits``.

    Edge cases: ``reverse_kl`` is infinite where the teacher's top-k hold all its mass
    (:math:`t_{rest} = 0`) and the student's tail does not; the other divergences stay finite.
    All positions ignored gives NaN for ``mean``.

    Example:
        >>> z = torch.randn(6, 1000, requires_grad=True)
        >>> top = torch.randn(6, 1000).log_softmax(-1).topk(20)
        >>> losskit.lm.topk_distillation_loss(z, top.values, top.indices).backward()

    Motivated by the offline distillation requests of Unsloth and Liger-Kernel (a served teacher
    returns top-k log-probs); the tail bucket is losskit's choice, documented above.
    """
    x = check_floating("student_logits", student_logits)
    lt = check_floating("teacher_topk_logprobs", teacher_topk_logprobs)
    ids = check_tensor("teacher_topk_ids", teacher_topk_ids)
    check_same_device("teacher_topk_logprobs", lt, x, "student_logits")
    check_same_device("teacher_topk_ids", ids, x, "student_logits")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"teacher_topk_ids must be an integer tensor, got dtype {ids.dtype}")
    if x.dim() < 1:
        raise ValueError("student_logits must be (..., V), got a 0-D tensor")
    w = None
    if student_weight is not None:
        w = check_floating("student_weight", student_weight)
        check_same_device("student_weight", w, x, "student_logits")
        if w.dim() != 2 or w.shape[1] != x.shape[-1] or w.dtype != x.dtype:
            raise ValueError(
                f"student_weight must be (V, H) with H = {x.shape[-1]} and dtype {x.dtype}, got "
                f"shape {tuple(w.shape)} and dtype {w.dtype}"
            )
    vocab = x.shape[-1] if w is None else w.shape[0]
    lead = tuple(x.shape[:-1])
    if lt.dim() < 1 or tuple(lt.shape[:-1]) != lead or lt.shape != ids.shape:
        raise ValueError(
            f"teacher_topk_logprobs and teacher_topk_ids must both be {(*lead, 'k')}, got "
            f"{tuple(lt.shape)} and {tuple(ids.shape)}"
        )
    if not 1 <= lt.shape[-1] <= vocab:
        raise ValueError(f"k must be in [1, V={vocab}], got {lt.shape[-1]}")
    check_class_indices(ids, vocab)
    divergence = check_choice("divergence", divergence, DIVERGENCES)
    beta = _check_beta(beta, divergence)
    temperature = check_temperature(temperature)
    ignore_index = check_int("ignore_index", ignore_index)
    reduction = check_reduction(reduction)
    labels = _check_labels(labels, lead, x, vocab, ignore_index)
    k = lt.shape[-1]
    # Given logits are copied into the block (no product); _block's temporaries: about eight.
    dtypes = (x.dtype if w is not None else compute_dtype(x.dtype),)
    blocks = _block_rows(math.prod(lead), vocab, dtypes, 8, x.device)
    opts = (True, divergence, beta, temperature, 0.0, reduction, *blocks)
    return _finish(
        _TOPK_DISTILL, x.reshape(-1, x.shape[-1]), w, lt.reshape(-1, k).detach(),
        ids.reshape(-1, k).long(), labels, lead, opts, ignore_index, x.dtype,
    )  # fmt: skip


topk_distillation_loss.backends = _TOPK_DISTILL
