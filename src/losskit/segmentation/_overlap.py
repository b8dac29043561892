"""Per-(image, class) overlap sums of the activated input with a class-index target.

For ``p`` of shape ``(N, C, S)`` (activated, spatial dims flattened) and class indices ``y`` of
shape ``(N, S)``, summing over the kept pixels ``i`` (``y_i != ignore_index``):

    I_c = sum_i p_ic [y_i = c],    P_c = sum_i p_ic (or p_ic^2),    T_c = sum_i [y_i = c]

Two forms, equal to float rounding:

* :func:`_masked_sums`, plain differentiable ops over a boolean one-hot (``torch.where``): what
  ``torch.compile``, ``torch.func`` and non-CPU devices get.
* :class:`_IndexOverlap`, for eager CPU calls: a float one-hot read from an identity table with
  one ``gather`` (code ``C`` for an ignored pixel reads a zero column), ``T = sum(hot)``,
  ``I = sum(p * hot)`` written over the one-hot; the backward is one ``gather`` from the table
  ``g_P[c] + g_I[c] [k = c]`` (``dL/dp_ic = g_P[c] + g_I[c] [y_i = c]``), then the activation's
  own backward. Nothing of ``p``'s size is kept for the backward, and no temporary beyond the
  one-hot is made. On the CPU ``torch.where`` with a broadcast boolean mask is an unvectorised
  loop and a boolean sum first copies to int64: the masked form made ``dice_loss`` forward +
  backward at (8, 4, 256, 256) about 1.7x slower than MONAI's ``DiceLoss`` (whose float one-hot
  comes from a serial ``scatter_``); see benchmarks/bench_segmentation_cpu.py.

Range check of the target (value checks only): the CPU ``gather`` rejects an index outside the
table itself, and that error is reworded as the contract's ``IndexError``; with an
``ignore_index``, an out-of-range ``y = C`` reads the ignored pixels' zero column and is caught by
comparing the class counts with the number of kept pixels (one scalar read).
"""

from __future__ import annotations

from typing import Any

import torch

from .._autograd import functorch_active
from .._checks import raise_class_index_error, value_checks_enabled
from ._contract import Seg, check_counts

__all__ = ["index_overlap_sums"]

Sums = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def index_overlap_sums(p: torch.Tensor, target: torch.Tensor, seg: Seg, squared_pred: bool) -> Sums:
    """``(I, P, T)``, each ``(N, C)`` in ``p``'s dtype, for ``p`` ``(N, C, S)`` and an index
    ``target`` ``(N, *spatial)`` with ``C > 1`` classes; ignored pixels are in none of the sums."""
    n, c = p.shape[0], p.shape[1]
    y = target.reshape(n, -1)
    if (
        p.device.type != "cpu"
        or torch.compiler.is_compiling()
        or functorch_active()
        or n * y.shape[1] == 0
    ):
        return _masked_sums(p, y, target, seg, squared_pred)
    code = y.long()
    kept: torch.Tensor | None = None
    if seg.ignore_index is not None:
        ignored = code == seg.ignore_index
        kept = ~ignored
        code = code.masked_fill(ignored, c)  # the extra bin C, dropped from every sum
    try:
        if torch.is_grad_enabled() and p.requires_grad:
            inter, p_sum, counts = _IndexOverlap.apply(p, code, kept, squared_pred)
        else:
            inter, p_sum, counts = _forward(p, code, kept, squared_pred)
    except RuntimeError as error:  # the one-hot's gather: an index outside [0, C) (or C + 1)
        if value_checks_enabled() and "out of bounds" in str(error):
            raise_class_index_error(target, c, seg.ignore_index)
        raise
    if kept is not None:  # y = C read the ignored pixels' column: the counts miss it
        check_counts(counts.sum(dtype=torch.float64), kept.sum(), target, seg)
    return inter, p_sum, counts


def _masked_sums(
    p: torch.Tensor, y: torch.Tensor, target: torch.Tensor, seg: Seg, squared_pred: bool
) -> Sums:
    """The sums in plain ops over a boolean one-hot (never a float one)."""
    n, c = p.shape[0], p.shape[1]
    y = y.reshape(n, 1, -1)
    hot = y == torch.arange(c, device=y.device).view(1, c, 1)
    kept: torch.Tensor | int = y.numel()
    if seg.ignore_index is not None:
        keep = y != seg.ignore_index
        if 0 <= seg.ignore_index < c:
            hot = hot & keep
        # (An ignore_index outside [0, C) matches no class: only p needs masking.)
        p = torch.where(keep, p, p.new_zeros(()))
        kept = keep.sum()
    inter = torch.where(hot, p, p.new_zeros(())).sum(2)
    counts = hot.sum(2)  # int64: exact at any size
    check_counts(counts.sum(), kept, target, seg)
    p_sum = (p * p if squared_pred else p).sum(2)  # one-hot targets: t² = t
    return inter, p_sum, counts.to(p.dtype)


def _table(c: int, ignored: bool, n: int, like: torch.Tensor) -> torch.Tensor:
    """The identity ``(N, C, bins)``: ``bins = C + 1`` with an ignored pixels' zero column."""
    return torch.eye(c, c + 1 if ignored else c, dtype=like.dtype, device=like.device).expand(
        n, c, -1
    )


def _lookup(table: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """``out[n, c, i] = table[n, c, code[n, i]]``, ``(N, C, S)``: one ``gather``."""
    n, c, s = table.shape[0], table.shape[1], code.shape[1]
    return table.gather(2, code.unsqueeze(1).expand(n, c, s))


def _forward(
    p: torch.Tensor, code: torch.Tensor, kept: torch.Tensor | None, squared_pred: bool
) -> Sums:
    """``(I, P, counts)``, each ``(N, C)`` in ``p``'s dtype.

    The one-hot is read from an identity table with one ``gather`` (on the CPU faster than
    ``(y == arange).to(dtype)``, and than a serial ``scatter_`` onto zeros), and ``p * hot`` is
    written over it: one temporary of ``p``'s size, freed before the backward.
    """
    n, c = p.shape[0], p.shape[1]
    hot = _lookup(_table(c, kept is not None, n, p), code)
    # Float counts are exact below 2^24 pixels per image; above, accumulate in float64.
    counts = hot.sum(2) if hot.shape[2] < 2**24 else hot.sum(2, dtype=torch.float64).to(p.dtype)
    if kept is not None:
        # where(), not a product: an ignored pixel's p adds exactly nothing, even inf or NaN.
        p = torch.where(kept.unsqueeze(1), p, p.new_zeros(()))
    inter = hot.mul_(p).sum(2)
    return inter, (p * p if squared_pred else p).sum(2), counts


def _backward(
    p: torch.Tensor | None,
    code: torch.Tensor,
    kept: torch.Tensor | None,
    g_inter: torch.Tensor,
    g_psum: torch.Tensor,
) -> torch.Tensor:
    """``dL/dp_ic = g_P[c] (2 p_ic g_P[c] with squared_pred, p given) + g_I[c] [y_i = c]`` on
    kept pixels, 0 on ignored ones (code C): one ``gather`` from the table
    ``G[n, c, k] = g_P[n, c] + g_I[n, c] [k = c]`` (zero column k = C)."""
    n, c = g_inter.shape
    table = torch.diag_embed(g_inter)
    if p is None:
        table = table + g_psum.unsqueeze(2)
    if kept is not None:
        table = torch.cat([table, table.new_zeros(n, c, 1)], 2)
    grad = _lookup(table, code)
    if p is None:
        return grad
    grad = torch.addcmul(grad, p, (2.0 * g_psum).unsqueeze(2))
    return grad if kept is None else torch.where(kept.unsqueeze(1), grad, grad.new_zeros(()))


class _IndexOverlap(torch.autograd.Function):
    """``(I, P, counts)`` of :func:`_forward` with the one-gather backward of :func:`_backward`.

    The backward is made of differentiable ops, so ``create_graph=True`` works; ``jvp`` serves
    forward-mode AD. ``counts`` is not differentiable. Never used under ``torch.func`` or
    ``torch.compile`` (they get :func:`_masked_sums`), so the old-style ``forward(ctx, ...)``
    saves the per-call signature binding that ``setup_context`` costs.
    """

    @staticmethod
    def forward(
        ctx: Any,
        p: torch.Tensor,
        code: torch.Tensor,
        kept: torch.Tensor | None,
        squared_pred: bool,
    ) -> Sums:
        inter, p_sum, counts = _forward(p, code, kept, squared_pred)
        ctx.mark_non_differentiable(counts)
        saved = (p if squared_pred else None, code, kept)
        ctx.save_for_backward(*saved)
        ctx.save_for_forward(*saved)
        return inter, p_sum, counts

    @staticmethod
    def backward(
        ctx: Any, g_inter: torch.Tensor, g_psum: torch.Tensor, _: torch.Tensor
    ) -> tuple[Any, ...]:
        p, code, kept = ctx.saved_tensors
        return _backward(p, code, kept, g_inter, g_psum), None, None, None

    @staticmethod
    def jvp(ctx: Any, p_t: torch.Tensor, *_: Any) -> tuple[torch.Tensor, torch.Tensor, None]:
        p, code, kept = ctx.saved_tensors
        if p is None:
            inter_t, p_sum_t, _ = _forward(p_t, code, kept, False)
        else:  # d(sum p^2) = sum 2 p dp
            inter_t = _forward(p_t, code, kept, False)[0]
            p_sum_t = _forward(2.0 * p * p_t, code, kept, False)[1]
        return inter_t, p_sum_t, None
