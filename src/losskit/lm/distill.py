"""Knowledge distillation for language models without the full logits of both models.

:func:`linear_distillation_loss` takes the student's and the teacher's final hidden states and
output embeddings and makes their logits a block of rows at a time (never both ``N x V``
matrices); :func:`topk_distillation_loss` distils from an offline teacher that returned only its
top-k log-probabilities per position (a served model), the rest of its distribution as one bucket.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._autograd import first_order_only, functorch_active
from .._checks import (
    check_class_indices,
    check_floating,
    check_int,
    check_number,
    check_same_device,
    check_tensor,
)
from .._dispatch import Backends
from .._precision import compute_dtype
from .._reduction import check_reduction
from ..distillation import check_temperature
from .preference import check_choice

__all__ = ["linear_distillation_loss", "topk_distillation_loss"]

DIVERGENCES = ("kl", "reverse_kl", "jsd", "tvd")
# Logits per row block (rows x V) of each model: 2 MB of float32. A block holds about ten such
# buffers (both models' logits, log-probabilities, probabilities, the gradient); small blocks keep
# the extra memory near the weight gradient's, at the price of one weight-gradient update each.
_BLOCK_ELEMENTS = 1 << 19


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


# ---------------------------------------------------------------- the chunked Function


def _teacher_block(teacher: tuple[torch.Tensor, torch.Tensor], topk: bool, r0: int, r1: int):
    """``(teacher_logits,)`` of rows ``r0:r1`` (made here), or ``(topk_logprobs, topk_ids)``."""
    a, b = teacher
    if topk:
        return a[r0:r1], b[r0:r1]
    with torch.no_grad():
        return (F.linear(a[r0:r1], b),)


def _student_block(x: torch.Tensor, w: torch.Tensor | None, r0: int, r1: int) -> torch.Tensor:
    return x[r0:r1] if w is None else F.linear(x[r0:r1], w)


def _accumulate(
    grad: torch.Tensor,
    xr: torch.Tensor,
    w: torch.Tensor | None,
    gx: torch.Tensor | None,
    gw: torch.Tensor | None,
    r0: int,
    r1: int,
) -> None:
    if w is None:  # x are the student's logits themselves
        if gx is not None:
            gx[r0:r1] = grad
        return
    g = grad.to(xr.dtype)
    if gx is not None:
        gx[r0:r1] = g @ w
    if gw is None:
        return
    if g.dtype == gw.dtype:
        gw.addmm_(g.t(), xr)  # in place: no weight-sized temporary
    else:  # half-precision inputs: the product in their dtype, accumulated in float32
        gw += (g.t() @ xr).to(gw.dtype)


class _DistillFunction(torch.autograd.Function):
    """Row-blocked distillation with gradients for the student's input (and weight).

    ``x`` is the student's hidden states with ``w`` its weight, or its logits with ``w`` None.
    For ``mean``/``sum`` the gradients are computed in the forward (no recomputation); for
    ``none`` the backward makes each block again."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor | None,
        t0: torch.Tensor,
        t1: torch.Tensor,
        y: torch.Tensor | None,
        keep: torch.Tensor,
        opts: tuple[bool, str, float, float, float, str, int],
    ) -> torch.Tensor:
        topk, divergence, beta, temperature, hard_weight, reduction, rows_per = opts
        n = x.shape[0]
        dtype = compute_dtype(x.dtype)
        needs = ctx.needs_input_grad
        fused = reduction != "none" and (needs[0] or needs[1])
        count = keep.sum().to(dtype)
        scale = 1.0 / count if reduction == "mean" else count.new_ones(())
        gx = torch.zeros(x.shape, dtype=dtype, device=x.device) if fused and needs[0] else None
        gw = torch.zeros(w.shape, dtype=dtype, device=x.device) if fused and needs[1] else None
        out = torch.empty(n, dtype=dtype, device=x.device)
        for r0 in range(0, n, rows_per):
            r1 = min(r0 + rows_per, n)
            rows, grad = _block(
                _student_block(x, w, r0, r1), _teacher_block((t0, t1), topk, r0, r1), topk,
                None if y is None else y[r0:r1], keep[r0:r1], divergence, beta, temperature,
                hard_weight, fused,
            )  # fmt: skip
            out[r0:r1] = rows
            if fused:
                _accumulate(grad * scale, x[r0:r1], w, gx, gw, r0, r1)
            del rows, grad
        ctx.fused, ctx.x_dtype = fused, x.dtype
        ctx.save_for_backward(x, w, t0, t1, y, keep, scale)
        ctx.opts = opts
        if reduction == "none":
            return out
        ctx.grads = (gx, gw)
        total = out.sum()
        return total / count if reduction == "mean" else total

    @staticmethod
    @first_order_only("linear_distillation_loss", "no double backward through the blocks")
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        none = (None,) * 5
        if ctx.fused and ctx.grads is not None:
            # The gradients made in the forward, scaled in place (a copy would double the
            # weight-sized buffer); a second backward (retain_graph) recomputes below.
            gx, gw = ctx.grads
            ctx.grads = None
            go = grad_out.to(gx.dtype if gx is not None else gw.dtype)
            scaled = tuple(None if g is None else g.mul_(go).to(ctx.x_dtype) for g in (gx, gw))
            return scaled + none
        x, w, t0, t1, y, keep, scale = ctx.saved_tensors
        topk, divergence, beta, temperature, hard_weight, reduction, rows_per = ctx.opts
        if reduction != "none":  # one upstream value for the (scaled) sum of the rows
            grad_out = (grad_out * scale).expand(x.shape[0])
        needs = ctx.needs_input_grad
        dtype = compute_dtype(x.dtype)
        gx = torch.zeros(x.shape, dtype=dtype, device=x.device) if needs[0] else None
        gw = torch.zeros(w.shape, dtype=dtype, device=x.device) if needs[1] else None
        go = grad_out.to(dtype)
        for r0 in range(0, x.shape[0], rows_per):
            r1 = min(r0 + rows_per, x.shape[0])
            _, grad = _block(
                _student_block(x, w, r0, r1), _teacher_block((t0, t1), topk, r0, r1), topk,
                None if y is None else y[r0:r1], keep[r0:r1], divergence, beta, temperature,
                hard_weight, True,
            )  # fmt: skip
            _accumulate(grad * go[r0:r1].unsqueeze(1), x[r0:r1], w, gx, gw, r0, r1)
        return tuple(None if g is None else g.to(ctx.x_dtype) for g in (gx, gw)) + none


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
    topk, divergence, beta, temperature, hard_weight, reduction, _ = opts
    n = x.shape[0]
    rows, _ = _block(
        _student_block(x, w, 0, n), _teacher_block((t0, t1), topk, 0, n), topk, y, keep,
        divergence, beta, temperature, hard_weight, False,
    )  # fmt: skip
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


def _rows_per_block(vocab: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(vocab, 1))


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

    The logits are made a block of about 512K per model at a time (2 MB of float32), so
    neither model's ``N x V`` logits exist; the teacher is a constant (no gradient). For ``mean``
    and ``sum`` the student's gradients are computed in the forward (no recomputation); with
    ``none`` the backward makes the blocks again.

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
    opts = (False, divergence, beta, temperature, hard_weight, reduction,
            _rows_per_block(ws.shape[0]))  # fmt: skip
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
    tokens and :math:`s_{rest} = \sum_{v
    otin \text{top-}k} s_v` (a log-sum-exp, no
    cancellation). The divergence (as :func:`linear_distillation_loss`: ``kl`` is
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
    opts = (True, divergence, beta, temperature, 0.0, reduction, _rows_per_block(vocab))
    return _finish(
        _TOPK_DISTILL, x.reshape(-1, x.shape[-1]), w, lt.reshape(-1, k).detach(),
        ids.reshape(-1, k).long(), labels, lead, opts, ignore_index, x.dtype,
    )  # fmt: skip


topk_distillation_loss.backends = _TOPK_DISTILL
