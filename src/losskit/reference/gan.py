"""NumPy references of the GAN losses (float64, no torch).

The two-batch losses (discriminator / critic) reduce each batch separately: ``mean`` is the mean
over the real batch plus the mean over the fake batch, ``sum`` the sum of both sums.
"""

from __future__ import annotations

import numpy as np

from ._common import as_float, log_sigmoid, reduce

__all__ = [
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "loss_sensitive_critic_loss",
    "loss_sensitive_generator_loss",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "minimax_discriminator_loss",
    "minimax_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]


def _two_batches(real_term: np.ndarray, fake_term: np.ndarray, reduction: str) -> np.ndarray:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"two-batch GAN losses take reduction 'mean' or 'sum', got {reduction!r}")
    return np.asarray(reduce(real_term, reduction) + reduce(fake_term, reduction))


def minimax_discriminator_loss(real_logits, fake_logits, reduction="mean"):
    """``E[-log sigmoid(r)] + E[-log(1 - sigmoid(f))]``; ``1 - sigmoid(f) = sigmoid(-f)``."""
    r, f = as_float(real_logits), as_float(fake_logits)
    return _two_batches(-log_sigmoid(r), -log_sigmoid(-f), reduction)


def minimax_generator_loss(fake_logits, non_saturating=True, reduction="mean"):
    """``-log sigmoid(f)`` (non-saturating) or ``log(1 - sigmoid(f)) = log sigmoid(-f)``."""
    f = as_float(fake_logits)
    loss = -log_sigmoid(f) if non_saturating else log_sigmoid(-f)
    return reduce(loss, reduction)


def wasserstein_critic_loss(real_scores, fake_scores, reduction="mean"):
    """``E[f(fake)] - E[f(real)]``."""
    return _two_batches(-as_float(real_scores), as_float(fake_scores), reduction)


def wasserstein_generator_loss(fake_scores, reduction="mean"):
    """``-E[f(fake)]``."""
    return reduce(-as_float(fake_scores), reduction)


def lsgan_discriminator_loss(real_scores, fake_scores, a=0.0, b=1.0, reduction="mean"):
    """``1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]``."""
    r, f = as_float(real_scores), as_float(fake_scores)
    return _two_batches(0.5 * (r - b) ** 2, 0.5 * (f - a) ** 2, reduction)


def lsgan_generator_loss(fake_scores, c=1.0, reduction="mean"):
    """``1/2 E[(D(G(z)) - c)^2]``."""
    return reduce(0.5 * (as_float(fake_scores) - c) ** 2, reduction)


def hinge_discriminator_loss(real_scores, fake_scores, reduction="mean"):
    """``E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]``."""
    r, f = as_float(real_scores), as_float(fake_scores)
    return _two_batches(np.maximum(0.0, 1.0 - r), np.maximum(0.0, 1.0 + f), reduction)


def hinge_generator_loss(fake_scores, reduction="mean"):
    """``-E[D(G(z))]``."""
    return reduce(-as_float(fake_scores), reduction)


def loss_sensitive_critic_loss(real_losses, fake_losses, margin, lam=1.0, reduction="mean"):
    """Per pair ``L(x) + lam * max(0, margin + L(x) - L(G(z)))`` (Qi 2017, objective S)."""
    r, f = as_float(real_losses), as_float(fake_losses)
    m = np.broadcast_to(as_float(margin), r.shape)
    loss = np.empty_like(r)
    for i in np.ndindex(r.shape):  # one pair at a time, as the formula reads
        loss[i] = r[i] + lam * max(0.0, m[i] + r[i] - f[i])
    return reduce(loss, reduction)


def loss_sensitive_generator_loss(fake_losses, reduction="mean"):
    """``E[L(G(z))]`` (Qi 2017, objective T)."""
    return reduce(as_float(fake_losses), reduction)
