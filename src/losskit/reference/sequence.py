"""NumPy reference of the CTC loss: the textbook alpha (and beta) recursions in float64.

Written per sample, with plain loops over time and over the extended label sequence
``l' = (blank, l_1, blank, ..., l_L, blank)`` (Graves et al., 2006, eqs. 6-10, 0-based).
"""

from __future__ import annotations

import numpy as np

from ._common import as_float, upstream

__all__ = ["ctc_loss", "ctc_loss_grad"]

_NEG_INF = -np.inf


def _samples(log_probs, targets, input_lengths, target_lengths):
    """Per sample: its ``(T_n, C)`` log-probabilities and its label list."""
    lp = as_float(log_probs)
    unbatched = lp.ndim == 2
    if unbatched:
        lp = lp[:, None, :]
    tg = np.asarray(targets).astype(np.int64)
    in_lens = np.asarray(input_lengths).astype(np.int64).reshape(-1)
    tg_lens = np.asarray(target_lengths).astype(np.int64).reshape(-1)
    out = []
    offset = 0
    for n in range(lp.shape[1]):
        length = int(tg_lens[n])
        if tg.ndim == 2:  # padded (N, S)
            labels = [int(v) for v in tg[n, :length]]
        else:  # concatenated
            labels = [int(v) for v in tg[offset : offset + length]]
            offset += length
        out.append((lp[: int(in_lens[n]), n, :], labels))
    return out, tg_lens, unbatched


def _extend(labels: list[int], blank: int) -> list[int]:
    ext = [blank]
    for c in labels:
        ext += [c, blank]
    return ext


def _skip_allowed(ext: list[int], s: int, blank: int) -> bool:
    """May a path jump from ``s - 2`` to ``s`` (over a blank)? Only into a label that differs
    from the previous label."""
    return s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]


def _log_alpha(lp: np.ndarray, ext: list[int], blank: int) -> np.ndarray:
    """``alpha[t, s] = log P(prefix l'_{0..s} emitted by frames 0..t, ending in l'_s)``."""
    t_len, width = lp.shape[0], len(ext)
    alpha = np.full((t_len, width), _NEG_INF)
    if t_len == 0:
        return alpha
    alpha[0, 0] = lp[0, ext[0]]
    if width > 1:
        alpha[0, 1] = lp[0, ext[1]]
    for t in range(1, t_len):
        for s in range(width):
            a = alpha[t - 1, s]
            if s >= 1:
                a = np.logaddexp(a, alpha[t - 1, s - 1])
            if _skip_allowed(ext, s, blank):
                a = np.logaddexp(a, alpha[t - 1, s - 2])
            alpha[t, s] = a + lp[t, ext[s]]
    return alpha


def _log_beta(lp: np.ndarray, ext: list[int], blank: int) -> np.ndarray:
    """``beta[t, s] = log P(suffix l'_{s..} emitted by frames t..T-1, starting in l'_s)``."""
    t_len, width = lp.shape[0], len(ext)
    beta = np.full((t_len, width), _NEG_INF)
    if t_len == 0:
        return beta
    beta[-1, -1] = lp[-1, ext[-1]]
    if width > 1:
        beta[-1, -2] = lp[-1, ext[-2]]
    for t in range(t_len - 2, -1, -1):
        for s in range(width):
            b = beta[t + 1, s]
            if s + 1 < width:
                b = np.logaddexp(b, beta[t + 1, s + 1])
            if s + 2 < width and _skip_allowed(ext, s + 2, blank):
                b = np.logaddexp(b, beta[t + 1, s + 2])
            beta[t, s] = b + lp[t, ext[s]]
    return beta


def _log_likelihood(lp: np.ndarray, labels: list[int], blank: int) -> float:
    ext = _extend(labels, blank)
    if lp.shape[0] == 0:  # no frames: only the empty target is emitted (with probability 1)
        return 0.0 if not labels else _NEG_INF
    last = _log_alpha(lp, ext, blank)[-1]
    return float(np.logaddexp(last[-1], last[-2]) if len(ext) > 1 else last[-1])


def _reduce(loss: np.ndarray, tg_lens: np.ndarray, reduction: str, unbatched: bool):
    if reduction == "none":
        return loss[0] if unbatched else loss
    if reduction == "sum":
        return np.asarray(loss.sum())
    if loss.size == 0:
        return np.asarray(np.nan)
    return np.asarray(np.mean(loss / np.maximum(tg_lens, 1)))


def ctc_loss(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
    exact_grad=True,
):
    """``-log sum_{alignments} prod_t p_t(pi_t)`` per sample by the alpha recursion;
    ``mean`` divides each loss by ``max(target_length, 1)`` then averages over the batch.
    ``exact_grad`` (losskit's choice of gradient) does not change the value."""
    samples, tg_lens, unbatched = _samples(log_probs, targets, input_lengths, target_lengths)
    loss = np.array([-_log_likelihood(lp, labels, blank) for lp, labels in samples])
    if zero_infinity:
        loss = np.where(np.isposinf(loss), 0.0, loss)
    return _reduce(loss, tg_lens, reduction, unbatched)


def ctc_loss_grad(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
    grad_output=None,
    exact_grad=True,
):
    """d/d log_probs of ``sum(grad_output * ctc_loss(...))`` by the alpha-beta posteriors.

    ``d loss_n / d log_probs[t, n, c] = -gamma_t(c)`` for ``t < input_lengths[n]``, with
    ``gamma_t(c) = sum_{s: l'_s = c} exp(alpha_t(s) + beta_t(s) - log_probs[t, c] - log p)``
    (``alpha`` and ``beta`` both count frame ``t``). Zero for an impossible alignment (where
    losskit chooses 0 whether or not ``zero_infinity`` is set) and for ``t >= input_lengths[n]``.
    """
    samples, tg_lens, unbatched = _samples(log_probs, targets, input_lengths, target_lengths)
    lp_all = as_float(log_probs)
    grad = np.zeros(lp_all.shape if not unbatched else (lp_all.shape[0], 1, lp_all.shape[1]))
    batch = len(samples)
    if reduction == "none":
        go = upstream(grad_output, (batch,) if not unbatched else ()).reshape(-1)
    else:
        go = np.full(batch, float(upstream(grad_output, ())))
        if reduction == "mean":
            go = go / np.maximum(tg_lens, 1) / batch
    for n, (lp, labels) in enumerate(samples):
        ext = _extend(labels, blank)
        log_p = _log_likelihood(lp, labels, blank)
        if lp.shape[0] == 0 or log_p == _NEG_INF:
            continue
        alpha, beta = _log_alpha(lp, ext, blank), _log_beta(lp, ext, blank)
        for t in range(lp.shape[0]):
            for s, c in enumerate(ext):
                grad[t, n, c] -= go[n] * np.exp(alpha[t, s] + beta[t, s] - lp[t, c] - log_p)
    return grad[:, 0, :] if unbatched else grad
