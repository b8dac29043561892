"""Sequence losses: connectionist temporal classification (CTC).

:func:`ctc_loss` is written in PyTorch (the alpha recursion in log space, autograd for the
gradient); it does not call :func:`torch.nn.functional.ctc_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import (
    check_bool,
    check_class_indices,
    check_floating,
    check_int,
    check_integer,
    check_ndim,
    check_tensor,
    value_checks_enabled,
)
from ._precision import upcast
from ._reduction import check_reduction

__all__ = ["ctc_loss"]

Lengths = torch.Tensor | Sequence[int]


def _safe_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(sum(exp(x)))`` over ``dim`` that is ``-inf`` with a zero gradient (not NaN) when
    every entry is ``-inf``.

    ``torch.logsumexp`` gets the value right there but its backward computes
    ``exp(-inf - (-inf)) = NaN``. Here the shift ``m`` is detached and made finite, so an all
    ``-inf`` slice gives ``s = 0``; ``clamp_min(1)`` feeds ``log`` a safe value and has a zero
    gradient below 1. Otherwise the largest entry contributes ``exp(0) = 1``, so ``s >= 1`` and
    the clamp is the identity (its gradient passes at ``s == 1``).
    """
    m = x.detach().amax(dim=dim, keepdim=True)
    shift = m.clamp_min(torch.finfo(x.dtype).min)
    s = torch.exp(x - shift).sum(dim=dim)
    return torch.log(s.clamp_min(1.0)) + m.squeeze(dim)


def _lengths(name: str, value: object, batch: int) -> list[int]:
    """``input_lengths`` / ``target_lengths`` as a list of ``batch`` Python ints (values unchecked)."""
    if isinstance(value, torch.Tensor):
        check_integer(name, value)
        if value.dim() > 1 or value.numel() != batch:
            raise ValueError(
                f"{name} must have one entry per batch element (N={batch}), "
                f"got a tensor of shape {tuple(value.shape)}"
            )
        # The recursion needs the lengths on the host (torch's kernels copy them there too).
        return [int(v) for v in value.reshape(-1).tolist()]
    if isinstance(value, (tuple, list)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{name} must hold ints, got {value!r}")
        if len(value) != batch:
            raise ValueError(
                f"{name} must have one entry per batch element (N={batch}), "
                f"got {len(value)} entries"
            )
        return list(value)
    raise TypeError(
        f"{name} must be an integer tensor or a tuple/list of ints, got {type(value).__name__}"
    )


def _check_length_values(name: str, lengths: list[int], high: int, what: str) -> None:
    for n, v in enumerate(lengths):
        if v < 0:
            raise ValueError(
                f"Expected {name} to have value at least 0, but got value {v} ({name}[{n}])"
            )
        if v > high:
            raise ValueError(
                f"Expected {name} to have value at most {high}, but got value {v} "
                f"({name}[{n}] exceeds {what})"
            )


def _padded_labels(
    targets: torch.Tensor, target_lengths: list[int], batch: int, unbatched: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets as ``(N, S)`` labels with ``S = max(target_lengths)``, plus the ``(N, S)`` mask of
    the entries inside each target. Entries outside the mask are replaced by 0 (any class
    index would do: they never reach the loss)."""
    max_len = max(target_lengths, default=0)
    lengths = torch.tensor(target_lengths, dtype=torch.long, device=targets.device)
    pos = torch.arange(max_len, device=targets.device)
    mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
    if targets.dim() == 2:  # padded (N, S); unbatched: (1, S)
        if targets.shape[0] != batch:
            expected = "1 (unbatched log_probs)" if unbatched else f"N={batch}"
            raise ValueError(
                f"targets of shape {tuple(targets.shape)} has batch size {targets.shape[0]}, "
                f"expected {expected} as log_probs"
            )
        _check_length_values("target_lengths", target_lengths, targets.shape[1], "targets.shape[1]")
        labels = targets[:, :max_len].long()
    else:  # concatenated: sample n holds targets[offset_n : offset_n + target_lengths[n]]
        _check_length_values("target_lengths", target_lengths, targets.numel(), "targets.numel()")
        if sum(target_lengths) != targets.numel():
            raise ValueError(
                f"concatenated targets must hold exactly sum(target_lengths) = "
                f"{sum(target_lengths)} labels, got targets of shape {tuple(targets.shape)}"
            )
        offsets = torch.cumsum(lengths, 0) - lengths
        index = torch.where(mask, offsets.unsqueeze(1) + pos.unsqueeze(0), 0)
        flat = targets.long()
        labels = flat[index] if flat.numel() else torch.zeros_like(index)
    return torch.where(mask, labels, 0), mask


def _check_label_values(labels: torch.Tensor, mask: torch.Tensor, classes: int, blank: int) -> None:
    if not value_checks_enabled():
        return
    valid = labels[mask]
    check_class_indices(valid, classes)
    if bool((valid == blank).any()):
        sample = int(mask.nonzero()[(valid == blank).nonzero()[0, 0], 0])
        raise ValueError(
            f"targets must not contain the blank index {blank}; found it in the target of "
            f"sample {sample}"
        )


def _extended_labels(labels: torch.Tensor, blank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The extended sequence ``l' = (blank, l_1, blank, l_2, ..., l_S, blank)``, shape
    ``(N, 2S+1)``, and the additive bias (0 or -inf) of the skip transition ``s-2 -> s``: allowed
    into a label that differs from the previous label (never into a blank)."""
    n, s = labels.shape
    ext = labels.new_full((n, 2 * s + 1), blank)
    ext[:, 1::2] = labels
    skip = torch.zeros(n, 2 * s + 1, dtype=torch.bool, device=labels.device)
    skip[:, 3::2] = labels[:, 1:] != labels[:, :-1]
    return ext, skip


def _log_likelihood(
    log_probs: torch.Tensor,
    labels: torch.Tensor,
    input_lengths: list[int],
    target_lengths: list[int],
    blank: int,
) -> torch.Tensor:
    """``log p(l_n | x_n)`` per sample, shape ``(N,)``, by the forward (alpha) recursion.

    ``alpha_t(s) = log_probs[t, l'_s] + LSE(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2))``
    (the last term only where the skip is allowed), started from a virtual ``alpha_{-1}`` that is
    0 at ``s = 0`` and -inf elsewhere; vectorised over the batch and ``s``, looping over time.
    ``alpha`` is kept with two leading -inf columns so the three predecessors of every ``s`` are a
    sliding window (``unfold``) of one tensor.
    """
    t_len, batch, _ = log_probs.shape
    width = labels.shape[1] * 2 + 1
    ext, skip = _extended_labels(labels, blank)
    dtype, device = log_probs.dtype, log_probs.device
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=device)
    # Predecessor window (s-2, s-1, s): the s-2 entry is masked where no skip is allowed.
    window_bias = torch.zeros(batch, width, 3, dtype=dtype, device=device)
    window_bias[..., 0] = torch.where(skip, 0.0, neg_inf)
    emit = log_probs.gather(2, ext.unsqueeze(0).expand(t_len, batch, width))  # (T, N, 2S+1)
    # unbind once: indexing emit[t] in the loop would make each step's backward fill a whole
    # (T, N, 2S+1) zero tensor.
    frames = emit.unbind(0)

    pad = torch.full((batch, 2), float("-inf"), dtype=dtype, device=device)
    alpha = torch.full((batch, width + 2), float("-inf"), dtype=dtype, device=device)
    alpha[:, 2] = 0.0
    history = [alpha]
    for t in range(max(input_lengths, default=0)):
        window = alpha.unfold(1, 3, 1) + window_bias  # (N, 2S+1, 3)
        alpha = torch.cat([pad, frames[t] + _safe_logsumexp(window, dim=2)], dim=1)
        history.append(alpha)
    # alpha after input_lengths[n] frames, for each sample n.
    steps = torch.tensor(input_lengths, dtype=torch.long, device=device)
    batch_idx = torch.arange(batch, device=device)
    final = torch.stack(history)[steps, batch_idx]  # (N, 2S+3)
    # The path ends on the last label (s = 2L-1) or the trailing blank (s = 2L), shifted by 2.
    tl = torch.tensor(target_lengths, dtype=torch.long, device=device)
    # For an empty target (L = 0) column 2L+1 = 1 is padding (-inf): only the blank ends it.
    ends = torch.stack([2 * tl + 1, 2 * tl + 2], dim=1)
    log_lik = _safe_logsumexp(final.gather(1, ends), dim=1)
    if len(history) == 1 and log_probs.requires_grad:
        # No frame was read (every input length is 0): keep the result attached to log_probs,
        # with a zero gradient, so that backward() works as for any other batch.
        log_lik = log_lik + log_probs[:0].sum()
    return log_lik


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: Lengths,
    target_lengths: Lengths,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> torch.Tensor:
    r"""Connectionist temporal classification loss (Graves et al., 2006).

    The negative log-likelihood of the target label sequence :math:`l_n`, summed over every
    alignment :math:`\pi` of ``input_lengths[n]`` frames that collapses to :math:`l_n` (merge
    repeats, then drop blanks):

    .. math::
        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(l_n)} \prod_t
                 \exp(\text{log\_probs}[t, n, \pi_t])

    computed by the forward (alpha) recursion over the extended sequence
    :math:`l' = (b, l_1, b, \ldots, l_S, b)` in log space: a loop over time, vectorised over the
    batch and the positions of :math:`l'`.

    Args:
        log_probs: ``(T, N, C)`` or unbatched ``(T, C)`` log-probabilities over ``C`` classes
            (blank included), usually ``log_softmax`` output; floating.
        targets: integer labels, either padded ``(N, S)`` (sample ``n`` is
            ``targets[n, :target_lengths[n]]``, the rest is ignored) or concatenated 1-D of size
            ``sum(target_lengths)``; unbatched: ``(S,)`` (concatenated, ``S == target_length``)
            or ``(1, S)``. Labels lie in ``[0, C)`` and are never ``blank``.
        input_lengths: ``(N,)`` integer tensor or tuple/list of ints, each in ``[0, T]``
            (unbatched: one entry, a 0-D or 1-element tensor or a 1-element tuple/list).
        target_lengths: likewise, each in ``[0, S]`` (padded targets).
        blank: index of the blank class, in ``[0, C)``.
        reduction: ``"none"`` (shape ``(N,)``, ``()`` unbatched), ``"sum"``, or ``"mean"``:
            each loss divided by its target length (clamped to at least 1), then averaged
            over the batch.
        zero_infinity: replace infinite losses (impossible alignments, e.g. fewer frames than
            the target needs) and their gradients by 0.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``log_probs``
        (float16/bfloat16 are computed in float32).

    Gradient: the exact gradient w.r.t. ``log_probs``, :math:`-\gamma_t(c)` (minus the
    posterior of class ``c`` at frame ``t``). torch's native backward instead returns
    :math:`\exp(\text{log\_probs}) - \gamma`, which is the correct gradient w.r.t. the *logits*
    once it flows through ``log_softmax`` (the extra term is removed by the softmax Jacobian), but
    not the gradient w.r.t. ``log_probs`` themselves. Through ``log_softmax`` both agree.

    Edge cases: an empty target gives :math:`-\sum_t \text{log\_probs}[t, n, b]`; an input length
    of 0 gives 0 for an empty target and inf otherwise. An impossible alignment gives ``inf``
    (as torch) with a zero gradient for that sample (torch: NaN); with ``zero_infinity=True``
    both are 0. An empty batch (``N = 0``) gives NaN for ``mean`` and 0 for ``sum`` (torch
    raises). Errors: ``TypeError`` for a non-floating ``log_probs``, non-integer (e.g. float)
    ``targets`` or lengths; ``ValueError`` for ``blank`` outside ``[0, C)``, lengths that are
    negative or exceed ``T`` / ``S``, mismatched batch sizes, and a target holding ``blank``;
    ``IndexError`` for a label outside ``[0, C)``. The two label checks read ``targets`` and
    are skipped under ``losskit.set_checks("shapes")``.

    Example:
        >>> log_probs = torch.randn(50, 4, 20).log_softmax(2).requires_grad_()
        >>> targets = torch.randint(1, 20, (4, 10))
        >>> loss = losskit.ctc_loss(log_probs, targets, (50, 50, 40, 30), (10, 7, 5, 10))
        >>> loss.backward()

    Mirrors :func:`torch.nn.functional.ctc_loss`; Graves et al., "Connectionist Temporal
    Classification", ICML 2006.
    """
    log_probs = check_floating("log_probs", log_probs)
    targets = check_integer("targets", check_tensor("targets", targets))
    reduction = check_reduction(reduction)
    blank = check_int("blank", blank)
    zero_infinity = check_bool("zero_infinity", zero_infinity)
    check_ndim("log_probs", log_probs, (2, 3))
    unbatched = log_probs.dim() == 2
    lp = upcast(log_probs.unsqueeze(1) if unbatched else log_probs)
    t_len, batch, classes = lp.shape
    if not 0 <= blank < classes:
        raise ValueError(f"blank must be in label range [0, {classes}), got blank={blank}")
    check_ndim("targets", targets, (1, 2))
    in_lens = _lengths("input_lengths", input_lengths, batch)
    tg_lens = _lengths("target_lengths", target_lengths, batch)
    _check_length_values("input_lengths", in_lens, t_len, "T = log_probs.shape[0]")
    labels, mask = _padded_labels(targets.to(lp.device), tg_lens, batch, unbatched)
    _check_label_values(labels, mask, classes, blank)

    loss = -_log_likelihood(lp, labels, in_lens, tg_lens, blank)
    if zero_infinity:
        loss = torch.where(loss == float("inf"), torch.zeros_like(loss), loss)
    if reduction == "none":
        out = loss.squeeze(0) if unbatched else loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        divisor = torch.tensor(tg_lens, dtype=loss.dtype, device=loss.device).clamp_min(1.0)
        out = (loss / divisor).mean()
    return out.to(log_probs.dtype)
