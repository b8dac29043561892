"""Sequence losses: connectionist temporal classification (CTC).

:func:`ctc_loss` validates its arguments, then calls torch's own ``torch.ctc_loss`` (its CPU,
CUDA and cuDNN kernels). Its ``formula`` backend is losskit's alpha recursion in log space
(autograd for the gradient, torch's or with ``exact_grad=True`` the exact one with respect to
``log_probs``): it runs for ``exact_grad=True``, for an empty batch, which torch's op refuses,
and under ``torch.compile``, which cannot trace torch's op without a graph break.
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
    value_check_needed,
)
from ._dispatch import Backends
from ._precision import compute_input, restore, upcast
from ._reduction import REDUCTION_ENUM, check_reduction

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


def _lengths(name: str, value: object, batch: int) -> torch.Tensor | list[int]:
    """``input_lengths`` / ``target_lengths``, type and size checked, values unread: a 1-D
    integer tensor stays a tensor (torch's op takes it as it is), a tuple/list becomes a list."""
    if isinstance(value, torch.Tensor):
        check_integer(name, value)
        if value.dim() > 1 or value.numel() != batch:
            raise ValueError(
                f"{name} must have one entry per batch element (N={batch}), "
                f"got a tensor of shape {tuple(value.shape)}"
            )
        return value if value.dim() == 1 else value.reshape(1)
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


def _host(lengths: torch.Tensor | list[int]) -> list[int]:
    """Lengths as Python ints (the recursion and the checks read them on the host)."""
    return lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths


def _check_length_values(name: str, lengths: list[int], high: int, what: str) -> None:
    if not lengths or (min(lengths) >= 0 and max(lengths) <= high):
        return
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


def _check_target_batch(targets: torch.Tensor, batch: int, unbatched: bool) -> None:
    if targets.dim() == 2 and targets.shape[0] != batch:  # padded (N, S); unbatched: (1, S)
        expected = "1 (unbatched log_probs)" if unbatched else f"N={batch}"
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} has batch size {targets.shape[0]}, "
            f"expected {expected} as log_probs"
        )


def _check_lengths(
    t_len: int, targets: torch.Tensor, in_lens: list[int], tg_lens: list[int]
) -> None:
    """The length values against ``T`` and the padded or concatenated targets.

    torch's op checks the same on every device (a ``RuntimeError``); losskit runs this check
    where it reads the lengths anyway (the value checks, the formula) and to reword torch's error.
    """
    _check_length_values("input_lengths", in_lens, t_len, "T = log_probs.shape[0]")
    if targets.dim() == 2:
        _check_length_values("target_lengths", tg_lens, targets.shape[1], "targets.shape[1]")
    else:  # concatenated: sample n holds targets[offset_n : offset_n + target_lengths[n]]
        _check_length_values("target_lengths", tg_lens, targets.numel(), "targets.numel()")
        if sum(tg_lens) != targets.numel():
            raise ValueError(
                f"concatenated targets must hold exactly sum(target_lengths) = "
                f"{sum(tg_lens)} labels, got targets of shape {tuple(targets.shape)}"
            )


def _padded_labels(
    targets: torch.Tensor, target_lengths: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Checked) targets as ``(N, S)`` labels with ``S = max(target_lengths)``, plus the ``(N, S)``
    mask of the entries inside each target. Entries outside the mask are replaced by 0 (any class
    index would do: they never reach the loss)."""
    max_len = max(target_lengths, default=0)
    lengths = torch.tensor(target_lengths, dtype=torch.long, device=targets.device)
    pos = torch.arange(max_len, device=targets.device)
    mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
    if targets.dim() == 2:
        labels = targets[:, :max_len].long()
    else:
        offsets = torch.cumsum(lengths, 0) - lengths
        index = torch.where(mask, offsets.unsqueeze(1) + pos.unsqueeze(0), 0)
        flat = targets.long()
        labels = flat[index] if flat.numel() else torch.zeros_like(index)
    return torch.where(mask, labels, 0), mask


def _check_label_values(
    targets: torch.Tensor, target_lengths: list[int], classes: int, blank: int
) -> None:
    """Labels in ``[0, C)`` and never ``blank``: one pass over the labels in use.

    torch's op checks neither (an out-of-range label reads out of bounds), so this runs on every
    device under ``set_checks("all")``."""
    if _labels_ok(targets, target_lengths, classes, blank):
        return
    labels, mask = _padded_labels(targets, target_lengths)  # the error path: name the culprit
    valid = labels[mask]
    check_class_indices(valid, classes)
    raw = targets[:, : labels.shape[1]][mask] if targets.dim() == 2 else valid
    out_of_range = (raw < 0) | (raw >= classes)
    if bool(out_of_range.any()):
        first = int(raw[out_of_range][0])
        raise IndexError(
            f"Target {first} is out of bounds: class indices must be in [0, {classes})"
        )
    sample = int(mask.nonzero()[(valid == blank).nonzero()[0, 0], 0])
    raise ValueError(
        f"targets must not contain the blank index {blank}; found it in the target of "
        f"sample {sample}"
    )


def _labels_ok(targets: torch.Tensor, target_lengths: list[int], classes: int, blank: int) -> bool:
    if targets.is_cpu:
        # Read as Python ints: cheaper than a chain of tensor ops at small sizes, and at large
        # ones negligible next to the loss.
        if targets.dim() == 2:
            rows = [r[:n] for r, n in zip(targets.tolist(), target_lengths, strict=True)]
        else:
            rows = [targets.tolist()]
        return all(not r or (min(r) >= 0 and max(r) < classes and blank not in r) for r in rows)
    bad = (targets < 0) | (targets >= classes) | (targets == blank)
    if targets.dim() == 2:  # only the entries inside each target
        lengths = torch.tensor(target_lengths, device=targets.device)
        bad &= torch.arange(targets.shape[1], device=targets.device) < lengths.unsqueeze(1)
    return not bool(bad.any())


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
    *,
    exact_grad: bool = False,
) -> torch.Tensor:
    r"""Connectionist temporal classification loss (Graves et al., 2006).

    The negative log-likelihood of the target label sequence :math:`l_n`, summed over every
    alignment :math:`\pi` of ``input_lengths[n]`` frames that collapses to :math:`l_n` (merge
    repeats, then drop blanks):

    .. math::
        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(l_n)} \prod_t
                 \exp(\text{log\_probs}[t, n, \pi_t])

    computed by torch's own op (``torch.ctc_loss``: its CPU, CUDA or cuDNN kernel) after
    losskit's checks. With ``exact_grad=True``, for an empty batch and under ``torch.compile``
    (torch's op has a data-dependent output shape) losskit's formula runs instead: the forward (alpha) recursion over the extended sequence
    :math:`l' = (b, l_1, b, \ldots, l_S, b)` in log space, a loop over time vectorised over the
    batch and the positions of :math:`l'`, differentiated by autograd (slower: a Python loop
    over ``T``).

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
        exact_grad: return the exact gradient with respect to ``log_probs`` (below) instead of
            torch's. Keyword only; default ``False`` (torch's gradient, torch's speed).

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``log_probs``
        (float16/bfloat16 are computed in float32).

    Gradient: by default torch's, :math:`\exp(\text{log\_probs}) - \gamma_t(c)` (with
    :math:`\gamma_t(c)` the posterior of class ``c`` at frame ``t``): the correct gradient with
    respect to the *logits* once it flows through ``log_softmax`` (the softmax Jacobian removes the
    extra term), which is how CTC is trained. ``exact_grad=True`` gives the exact gradient with
    respect to ``log_probs`` themselves, :math:`-\gamma_t(c)`. It matters only when ``log_probs``
    are not the output of a ``log_softmax`` over the classes: scores normalised another way, a
    gradient checked numerically with respect to ``log_probs``, or second-order uses of it.

    Edge cases: an empty target gives :math:`-\sum_t \text{log\_probs}[t, n, b]`; an input length
    of 0 gives 0 for an empty target and inf otherwise. An impossible alignment gives ``inf``
    (as torch); its gradient is torch's (NaN) by default, 0 with ``exact_grad=True``; with
    ``zero_infinity=True`` both are 0. An empty batch (``N = 0``) gives NaN for ``mean`` and 0 for
    ``sum`` (torch raises; losskit's formula computes it). Errors: ``TypeError`` for a non-floating ``log_probs``, non-integer (e.g. float)
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
    t_len, batch, classes = (
        (log_probs.shape[0], 1, log_probs.shape[1]) if unbatched else log_probs.shape
    )
    if not 0 <= blank < classes:
        raise ValueError(f"blank must be in label range [0, {classes}), got blank={blank}")
    check_ndim("targets", targets, (1, 2))
    in_lens = _lengths("input_lengths", input_lengths, batch)
    tg_lens = _lengths("target_lengths", target_lengths, batch)
    exact_grad = check_bool("exact_grad", exact_grad)
    if targets.device != log_probs.device:  # allowed, as torch
        targets = targets.to(log_probs.device)
    _check_target_batch(targets, batch, unbatched)
    # The lengths' values are left to the backend (torch's op rejects bad ones, reworded; the
    # formula checks them); the value checks read them first to check the labels they delimit.
    if value_check_needed(targets, native_rejects=False):
        host_tg_lens = _host(tg_lens)
        _check_lengths(t_len, targets, _host(in_lens), host_tg_lens)
        _check_label_values(targets, host_tg_lens, classes, blank)
    return _CTC(log_probs, targets, in_lens, tg_lens, blank, reduction, zero_infinity, exact_grad)


def _ctc_torch(log_probs, targets, in_lens, tg_lens, blank, reduction, zero_infinity, exact_grad):
    lp = compute_input(log_probs)  # torch's CPU kernel has no float16/bfloat16
    if targets.dtype not in (torch.int64, torch.int32):
        targets = targets.long()
    if isinstance(in_lens, torch.Tensor) != isinstance(tg_lens, torch.Tensor):
        in_lens, tg_lens = _host(in_lens), _host(tg_lens)  # torch takes two tensors or two lists
    unbatched = log_probs.dim() == 2
    if unbatched:  # a batch of one; (S,) targets read as concatenated, (1, S) as padded
        lp = lp.unsqueeze(1)
    try:
        red = 0 if unbatched else REDUCTION_ENUM[reduction]
        out = torch.ctc_loss(lp, targets, in_lens, tg_lens, blank, red, zero_infinity)
    except RuntimeError:  # torch's length checks: say which entry, as the formula does
        _check_lengths(lp.shape[0], targets, _host(in_lens), _host(tg_lens))
        raise
    if unbatched:
        out = out.squeeze(0) if reduction == "none" else _reduce_ctc(out, tg_lens, reduction)
    return restore(out, log_probs.dtype)


def _ctc_formula(log_probs, targets, in_lens, tg_lens, blank, reduction, zero_infinity, exact_grad):
    unbatched = log_probs.dim() == 2
    in_lens, tg_lens = _host(in_lens), _host(tg_lens)
    _check_lengths(log_probs.shape[0], targets, in_lens, tg_lens)
    lp = upcast(log_probs.unsqueeze(1) if unbatched else log_probs)
    labels, _ = _padded_labels(targets.reshape(1, -1) if unbatched else targets, tg_lens)
    loss = -_log_likelihood(lp, labels, in_lens, tg_lens, blank)
    infinite = loss == float("inf")
    if not exact_grad and lp.requires_grad:
        # torch's gradient is the exact one plus exp(log_probs) on the frames a sample reads:
        # add a term whose value is 0 and whose gradient is that (0 for an infinite loss).
        frames = torch.arange(lp.shape[0], device=lp.device).unsqueeze(1) < torch.tensor(
            in_lens, device=lp.device
        )
        mass = (lp.exp() * frames.unsqueeze(2)).sum((0, 2))
        loss = loss + torch.where(infinite, 0.0, mass - mass.detach())
    if zero_infinity:
        loss = torch.where(infinite, torch.zeros_like(loss), loss)
    if reduction == "none":
        out = loss.squeeze(0) if unbatched else loss
    else:
        out = _reduce_ctc(loss, tg_lens, reduction)
    return out.to(log_probs.dtype)


def _reduce_ctc(
    loss: torch.Tensor, tg_lens: torch.Tensor | list[int], reduction: str
) -> torch.Tensor:
    if reduction == "sum":
        return loss.sum()
    if isinstance(tg_lens, torch.Tensor):
        divisor = tg_lens.to(device=loss.device, dtype=loss.dtype)
    else:
        divisor = torch.tensor(tg_lens, dtype=loss.dtype, device=loss.device)
    return (loss / divisor.clamp_min(1.0)).mean()


def _ctc_torch_refuses(
    log_probs, targets, in_lens, tg_lens, blank, reduction, zero_infinity, exact_grad
):
    if exact_grad:
        return "exact_grad=True (torch's gradient assumes log_softmax inputs)"
    if torch.compiler.is_compiling():
        return "torch.compile: torch's op has a data-dependent output shape (a graph break)"
    if log_probs.dim() == 3 and log_probs.shape[1] == 0:
        return "an empty batch (torch's op raises)"
    return None


_CTC = Backends(
    "ctc_loss",
    torch=_ctc_torch,
    formula=_ctc_formula,
    refuses={"torch": _ctc_torch_refuses},
)
ctc_loss.backends = _CTC
