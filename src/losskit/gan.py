"""GAN losses: pure functions of discriminator (critic) outputs, plus the WGAN-GP penalty.

Every function takes the raw outputs of the discriminator (logits or unbounded scores), never
probabilities, so the minimax losses can use the stable log-sigmoid form.

Reductions. A discriminator/critic loss is a sum of two expectations, one over the real batch and
one over the fake batch, and the two batches may have different sizes (and shapes). Those losses
accept ``reduction="mean"`` (each expectation is the mean over its own batch) and ``"sum"`` (each
is a sum), but not ``"none"``: an element-wise loss only exists when real and fake samples are
paired one to one. Generator losses (one batch) and the loss-sensitive critic loss (paired samples
by definition) accept ``"none" | "mean" | "sum"``. The mean of an empty batch is NaN, as in torch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import (
    any_true,
    check_bool,
    check_broadcasts_to,
    check_floating,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    value_checks_enabled,
)
from ._precision import upcast
from ._reduction import check_reduction, reduce

__all__ = [
    "gradient_penalty",
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

# Reductions of the losses that take a real and a fake batch of possibly different sizes.
PAIRED_REDUCTIONS: tuple[str, ...] = ("mean", "sum")


def _check_two_batches(
    real_name: str, real: object, fake_name: str, fake: object
) -> tuple[torch.Tensor, torch.Tensor]:
    real = check_floating(real_name, real)
    fake = check_floating(fake_name, fake)
    if real.dtype != fake.dtype:
        raise TypeError(
            f"{real_name} and {fake_name} must have the same dtype, got {real.dtype} and {fake.dtype}"
        )
    check_same_device(fake_name, fake, real, real_name)
    return real, fake


def _two_batch_loss(
    real_term: torch.Tensor, fake_term: torch.Tensor, reduction: str, like: torch.Tensor
) -> torch.Tensor:
    """``reduce(real_term) + reduce(fake_term)``: separate means (or sums) of the two batches."""
    return (reduce(real_term, reduction) + reduce(fake_term, reduction)).to(like.dtype)


# ---------------------------------------------------------------- minimax (Goodfellow et al. 2014)


def minimax_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""Discriminator loss of the original (minimax) GAN, on logits.

    With :math:`D = \sigma(\text{logit})`:

    .. math::
        L_D = \mathbb{E}_x[-\log D(x)] + \mathbb{E}_z[-\log(1 - D(G(z)))]
            = \mathbb{E}[-\log\sigma(r)] + \mathbb{E}[-\log\sigma(-f)]

    computed as ``-logsigmoid(r)`` and ``-logsigmoid(-f)`` (binary cross entropy with targets 1 and
    0), finite for logits of any magnitude.

    Args:
        real_logits: discriminator logits on real samples, any shape (usually ``(N,)`` or ``(N, 1)``).
        fake_logits: logits on generated samples, any shape; the batch size may differ from the
            real one.
        reduction: ``"mean"`` (mean over the real batch plus mean over the fake batch) or
            ``"sum"``. ``"none"`` is not accepted (see the module docstring).

    Returns:
        A scalar in the dtype of ``real_logits``.

    An empty batch gives NaN for ``mean`` (its mean is NaN) and contributes 0 to ``sum``.

    Example:
        >>> D, G = torch.nn.Linear(2, 1), torch.nn.Linear(3, 2)  # discriminator and generator
        >>> x, z = torch.randn(8, 2), torch.randn(8, 3)
        >>> d_loss = losskit.gan.minimax_discriminator_loss(D(x), D(G(z).detach()))

    Reference: Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, eq. 1.
    """
    real, fake = _check_two_batches("real_logits", real_logits, "fake_logits", fake_logits)
    reduction = check_reduction(reduction, PAIRED_REDUCTIONS)
    r, f = upcast(real), upcast(fake)
    return _two_batch_loss(-F.logsigmoid(r), -F.logsigmoid(-f), reduction, real)


def minimax_generator_loss(
    fake_logits: torch.Tensor, non_saturating: bool = True, reduction: str = "mean"
) -> torch.Tensor:
    r"""Generator loss of the minimax GAN, non-saturating (default) or saturating, on logits.

    .. math::
        \ell^{\text{NS}} = -\log D(G(z)) = -\log\sigma(f)
        \qquad
        \ell^{\text{sat}} = \log(1 - D(G(z))) = \log\sigma(-f)

    The saturating form is the generator's side of the minimax game; its gradient vanishes when the
    discriminator confidently rejects the samples (:math:`f \to -\infty`), which is why
    Goodfellow et al. suggest the non-saturating form in practice. Both are finite for any logit.

    Args:
        fake_logits: discriminator logits on generated samples, any shape.
        non_saturating: ``True`` for :math:`-\log D(G(z))`, ``False`` for
            :math:`\log(1 - D(G(z)))`.
        reduction: ``"none"`` (``fake_logits``' shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``fake_logits``' shape for ``"none"``; the dtype of ``fake_logits``.

    Example:
        >>> D, G = torch.nn.Linear(2, 1), torch.nn.Linear(3, 2)
        >>> g_loss = losskit.gan.minimax_generator_loss(D(G(torch.randn(8, 3))))

    Reference: Goodfellow et al. 2014, eq. 1 and section 3 (the non-saturating trick).
    """
    fake = check_floating("fake_logits", fake_logits)
    non_saturating = check_bool("non_saturating", non_saturating)
    reduction = check_reduction(reduction)
    f = upcast(fake)
    loss = -F.logsigmoid(f) if non_saturating else F.logsigmoid(-f)
    return reduce(loss, reduction).to(fake.dtype)


# ---------------------------------------------------------------- Wasserstein (Arjovsky et al. 2017)


def wasserstein_critic_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""WGAN critic loss: the negated Kantorovich–Rubinstein estimate of the Wasserstein-1 distance.

    .. math:: L_f = \mathbb{E}_z[f(G(z))] - \mathbb{E}_x[f(x)]

    The critic must be kept (roughly) 1-Lipschitz, by weight clipping or by adding
    :func:`gradient_penalty`.

    Args:
        real_scores: critic outputs on real samples, any shape.
        fake_scores: critic outputs on generated samples, any shape (batch size may differ).
        reduction: ``"mean"`` (difference of the two means) or ``"sum"`` (difference of sums).

    Returns:
        A scalar in the dtype of ``real_scores``.

    Example:
        >>> f, G = torch.nn.Linear(2, 1), torch.nn.Linear(3, 2)  # critic and generator
        >>> x, z = torch.randn(8, 2), torch.randn(8, 3)
        >>> c_loss = losskit.gan.wasserstein_critic_loss(f(x), f(G(z).detach()))

    Reference: Arjovsky, Chintala and Bottou, "Wasserstein GAN", ICML 2017, Algorithm 1.
    """
    real, fake = _check_two_batches("real_scores", real_scores, "fake_scores", fake_scores)
    reduction = check_reduction(reduction, PAIRED_REDUCTIONS)
    return _two_batch_loss(-upcast(real), upcast(fake), reduction, real)


def wasserstein_generator_loss(fake_scores: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""WGAN generator loss: :math:`-\mathbb{E}_z[f(G(z))]`.

    Args:
        fake_scores: critic outputs on generated samples, any shape.
        reduction: ``"none"`` (``-fake_scores``), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``fake_scores``' shape for ``"none"``.

    Reference: Arjovsky et al. 2017, Algorithm 1.
    """
    fake = check_floating("fake_scores", fake_scores)
    reduction = check_reduction(reduction)
    return reduce(-upcast(fake), reduction).to(fake.dtype)


def _safe_norm(sq: torch.Tensor) -> torch.Tensor:
    # sqrt with a zero (sub)gradient at 0: sqrt'(0) is infinite and would turn a zero gradient of
    # the critic (a constant region) into NaN in the double backward.
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    target_norm: float = 1.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""WGAN-GP gradient penalty on random interpolates between real and fake samples.

    For each pair :math:`i` a single :math:`\epsilon_i \sim U[0, 1]` is drawn and

    .. math::
        \hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\, \tilde x_i, \qquad
        \ell_i = \lambda\, (\lVert \nabla_{\hat x} f(\hat x)_i \rVert_2 - t)^2

    where the gradient of sample :math:`i` is taken with respect to :math:`\hat x_i` only (all of
    its non-batch dimensions flattened). The gradients come from one ``autograd.grad`` of
    ``critic(x_hat).sum()`` with ``create_graph=True``, so the penalty is differentiable with
    respect to the critic's parameters. That sum gives per-sample gradients because the critic
    maps each sample independently; a critic that mixes samples (batch normalisation in training
    mode) invalidates the penalty, as Gulrajani et al. note (use layer normalisation instead).

    The interpolates are detached from ``real`` and ``fake``: the penalty regularises the critic,
    so no gradient flows back to the generator through ``fake``.

    Args:
        critic: a callable (usually the critic ``nn.Module``) mapping a batch ``(N, *)`` to scores
            of shape ``(N,)`` or ``(N, 1)`` (any ``(N, ...)``: its entries are summed per sample).
        real: real samples, shape ``(N, *)``, floating.
        fake: generated samples, the same shape as ``real``.
        weight: :math:`\lambda \ge 0` (10 in the paper).
        target_norm: :math:`t \ge 0`, the gradient norm the penalty pulls towards (1 in the paper).
        generator: optional ``torch.Generator`` for the :math:`\epsilon_i` (on ``real``'s device).
        reduction: ``"none"`` (shape ``(N,)``), ``"mean"`` (the paper) or ``"sum"``.

    Returns:
        Scalar, or ``(N,)`` for ``"none"``; the dtype of ``real``.

    Where the critic's gradient is exactly zero (a constant critic) the penalty is
    :math:`\lambda t^2` with a zero, not NaN, gradient. An empty batch gives NaN for ``mean``.

    Example:
        >>> critic = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        >>> score = lambda x: critic(x).squeeze(1)
        >>> real, fake = torch.randn(16, 2), torch.randn(16, 2)  # fake: G(z).detach()
        >>> gp = losskit.gan.gradient_penalty(score, real, fake, weight=10.0)
        >>> (losskit.gan.wasserstein_critic_loss(score(real), score(fake)) + gp).backward()

    Reference: Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, Algorithm 1.
    """
    if not callable(critic):
        raise TypeError(f"critic must be callable (e.g. an nn.Module), got {type(critic).__name__}")
    real = check_floating("real", real)
    fake = check_floating("fake", fake)
    check_same_shape("real", real, "fake", fake)
    if real.dim() == 0:
        raise ValueError("real and fake must have a batch dimension (N, *), got 0-D tensors")
    if real.dtype != fake.dtype:
        raise TypeError(
            f"real and fake must have the same dtype, got {real.dtype} and {fake.dtype}"
        )
    check_same_device("fake", fake, real, "real")
    weight = check_range("weight", weight, 0.0, finite=True)
    target_norm = check_range("target_norm", target_norm, 0.0, finite=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    reduction = check_reduction(reduction)

    n = real.shape[0]
    eps_shape = (n,) + (1,) * (real.dim() - 1)  # one epsilon per sample, broadcast over features
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = check_tensor("critic(x_hat)", critic(x_hat))
    if scores.dim() == 0 or scores.shape[0] != n:
        raise ValueError(
            f"critic must return one score per sample, shape ({n},) or ({n}, ...); "
            f"got shape {tuple(scores.shape)}"
        )
    if scores.requires_grad:
        (grads,) = torch.autograd.grad(
            scores.sum(), x_hat, create_graph=True, allow_unused=True, materialize_grads=True
        )
    else:  # the scores do not depend on x_hat at all: a zero gradient
        grads = torch.zeros_like(x_hat)
    sq_norm = upcast(grads).flatten(1).pow(2).sum(1)  # flatten, not reshape(n, -1): n may be 0
    penalty = weight * (_safe_norm(sq_norm) - target_norm) ** 2
    return reduce(penalty, reduction).to(real.dtype)


# ---------------------------------------------------------------- least squares (Mao et al. 2017)


def lsgan_discriminator_loss(
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    a: float = 0.0,
    b: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Least-squares GAN discriminator loss with fake label :math:`a` and real label :math:`b`.

    .. math::
        L_D = \tfrac12\, \mathbb{E}_x[(D(x) - b)^2] + \tfrac12\, \mathbb{E}_z[(D(G(z)) - a)^2]

    on the raw (linear) discriminator outputs. Mao et al. use ``a=0, b=1, c=1`` (the default) or
    ``a=-1, b=1, c=0`` (the Pearson :math:`\chi^2` choice, ``b - c = 1``, ``b - a = 2``).

    Args:
        real_scores: discriminator outputs on real samples, any shape.
        fake_scores: outputs on generated samples, any shape (batch size may differ).
        a: target of fake samples.
        b: target of real samples.
        reduction: ``"mean"`` (separate means of the two batches) or ``"sum"``.

    Returns:
        A scalar in the dtype of ``real_scores``.

    Reference: Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017.
    """
    real, fake = _check_two_batches("real_scores", real_scores, "fake_scores", fake_scores)
    a = check_range("a", a, finite=True)
    b = check_range("b", b, finite=True)
    reduction = check_reduction(reduction, PAIRED_REDUCTIONS)
    real_term = 0.5 * (upcast(real) - b) ** 2
    fake_term = 0.5 * (upcast(fake) - a) ** 2
    return _two_batch_loss(real_term, fake_term, reduction, real)


def lsgan_generator_loss(
    fake_scores: torch.Tensor, c: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Least-squares GAN generator loss: :math:`\tfrac12\, \mathbb{E}_z[(D(G(z)) - c)^2]`.

    Args:
        fake_scores: discriminator outputs on generated samples, any shape.
        c: the value the generator wants the discriminator to output on its samples.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``fake_scores``' shape for ``"none"``.

    Reference: Mao et al. 2017.
    """
    fake = check_floating("fake_scores", fake_scores)
    c = check_range("c", c, finite=True)
    reduction = check_reduction(reduction)
    return reduce(0.5 * (upcast(fake) - c) ** 2, reduction).to(fake.dtype)


# ---------------------------------------------------------------- hinge (Lim & Ye 2017; Miyato et al. 2018)


def hinge_discriminator_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""Hinge GAN discriminator loss.

    .. math::
        L_D = \mathbb{E}_x[\max(0, 1 - D(x))] + \mathbb{E}_z[\max(0, 1 + D(G(z)))]

    At the hinge (a score of exactly :math:`\pm 1`) the gradient is 0 (``relu``'s subgradient).

    Args:
        real_scores: discriminator outputs on real samples, any shape.
        fake_scores: outputs on generated samples, any shape (batch size may differ).
        reduction: ``"mean"`` or ``"sum"``.

    Returns:
        A scalar in the dtype of ``real_scores``.

    Reference: Lim and Ye, "Geometric GAN", 2017; Miyato et al., "Spectral Normalization for
    Generative Adversarial Networks", ICLR 2018.
    """
    real, fake = _check_two_batches("real_scores", real_scores, "fake_scores", fake_scores)
    reduction = check_reduction(reduction, PAIRED_REDUCTIONS)
    return _two_batch_loss(F.relu(1.0 - upcast(real)), F.relu(1.0 + upcast(fake)), reduction, real)


def hinge_generator_loss(fake_scores: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Hinge GAN generator loss: :math:`-\mathbb{E}_z[D(G(z))]` (the same as the WGAN generator's).

    Args:
        fake_scores: discriminator outputs on generated samples, any shape.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``fake_scores``' shape for ``"none"``.

    Reference: Miyato et al. 2018.
    """
    fake = check_floating("fake_scores", fake_scores)
    reduction = check_reduction(reduction)
    return reduce(-upcast(fake), reduction).to(fake.dtype)


# ---------------------------------------------------------------- loss-sensitive GAN (Qi 2017)


def _check_margin(margin: object, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(margin, torch.Tensor):
        margin = check_floating("margin", margin)
        check_broadcasts_to("margin", margin, like, "the shape of the losses")
        if value_checks_enabled() and margin.numel() and any_true(~(margin >= 0)):
            first = float(margin[~(margin >= 0)].flatten()[0])
            raise ValueError(f"margin must be >= 0 (a distance Δ(x, G(z))), found {first!r}")
        return margin
    m = check_range("margin", margin, finite=True)
    if m < 0:
        raise ValueError(f"margin must be >= 0 (a distance Δ(x, G(z))), got {margin!r}")
    return m


def loss_sensitive_critic_loss(
    real_losses: torch.Tensor,
    fake_losses: torch.Tensor,
    margin: torch.Tensor | float,
    lam: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Loss-sensitive GAN objective of the loss function :math:`L_\theta` (Qi 2017).

    For paired real samples :math:`x_i` and generated samples :math:`G(z_i)`:

    .. math::
        \ell_i = L_\theta(x_i) + \lambda\,\bigl(\Delta(x_i, G(z_i)) + L_\theta(x_i)
                 - L_\theta(G(z_i))\bigr)_+

    whose mean is the paper's :math:`S(\theta, \phi^*) = \mathbb{E}_x L_\theta(x) + \lambda\,
    \mathbb{E}_{x, z}(\Delta(x, G(z)) + L_\theta(x) - L_\theta(G(z)))_+`: the loss of a real
    sample should be lower than that of a generated sample by at least the margin
    :math:`\Delta` (a distance between the two, e.g. the per-sample :math:`\ell_1` distance
    ``(x - G(z)).abs().flatten(1).mean(1)``), and real losses are kept small. The generator then
    minimises :func:`loss_sensitive_generator_loss`. The hinge :math:`(\cdot)_+` is ``relu`` (a
    zero subgradient at the kink).

    Args:
        real_losses: :math:`L_\theta(x_i)`, the loss network's outputs on real samples, any shape.
        fake_losses: :math:`L_\theta(G(z_i))`, the same shape (samples are paired).
        margin: :math:`\Delta(x_i, G(z_i)) \ge 0`, a number or a tensor broadcastable to the
            losses' shape (it may carry gradients, though the paper holds the generator fixed here).
        lam: :math:`\lambda \ge 0`, the weight of the margin term.
        reduction: ``"none"`` (the losses' shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or the losses' shape for ``"none"``.

    Raises ``ValueError`` for a negative margin (a value check for tensors).

    Reference: Qi, "Loss-Sensitive Generative Adversarial Networks on Lipschitz Densities",
    IJCV 2020 (arXiv:1701.06264), the objectives S (here) and T.
    """
    real = check_floating("real_losses", real_losses)
    fake = check_floating("fake_losses", fake_losses)
    check_same_shape("real_losses", real, "fake_losses", fake)
    check_same_device("fake_losses", fake, real, "real_losses")
    margin = _check_margin(margin, real)
    lam = check_range("lam", lam, 0.0, finite=True)
    reduction = check_reduction(reduction)
    r, f = upcast(real), upcast(fake)
    m = upcast(margin) if isinstance(margin, torch.Tensor) else margin
    loss = r + lam * F.relu(m + r - f)
    return reduce(loss, reduction).to(real.dtype)


def loss_sensitive_generator_loss(
    fake_losses: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""Loss-sensitive GAN generator objective: :math:`T(\phi) = \mathbb{E}_z L_\theta(G(z))`.

    Args:
        fake_losses: :math:`L_\theta(G(z_i))`, any shape.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``fake_losses``' shape for ``"none"``.

    Reference: Qi 2020, the objective T.
    """
    fake = check_floating("fake_losses", fake_losses)
    reduction = check_reduction(reduction)
    return reduce(upcast(fake), reduction).to(fake.dtype)
