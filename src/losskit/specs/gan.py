"""Registry entries of the GAN losses.

The discriminator/critic losses take two batches that may differ in size, so they register only
the ``"mean"`` and ``"sum"`` reductions (see :mod:`losskit.gan`). The minimax losses are binary
cross entropy with targets 1 and 0 and the least-squares losses are halved MSE, so those are also
compared with compositions of ``torch.nn.functional`` (values, gradients and extreme logits).
``gradient_penalty`` takes a critic, not tensors, and has dedicated tests (tests/test_gan.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import gan as F
from .. import nn as lnn
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import rand, randn

_PAIRED = F.PAIRED_REDUCTIONS
F64 = torch.float64


def _bool_coin(g: torch.Generator) -> bool:
    return bool(torch.randint(0, 2, (1,), generator=g))


# ---------------------------------------------------------------- torch compositions (oracles)


def torch_minimax_discriminator(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """BCE with logits against target 1 on real plus target 0 on fake (torch's own kernels)."""
    real = TF.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits), reduction=reduction
    )
    fake = TF.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits), reduction=reduction
    )
    return real + fake


def torch_minimax_generator(
    fake_logits: torch.Tensor, non_saturating: bool = True, reduction: str = "mean"
) -> torch.Tensor:
    """-log D = BCE(f, 1); log(1 - D) = -BCE(f, 0)."""
    if non_saturating:
        return TF.binary_cross_entropy_with_logits(
            fake_logits, torch.ones_like(fake_logits), reduction=reduction
        )
    return -TF.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits), reduction=reduction
    )


def torch_lsgan_discriminator(
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    a: float = 0.0,
    b: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    real = TF.mse_loss(real_scores, torch.full_like(real_scores, b), reduction=reduction)
    fake = TF.mse_loss(fake_scores, torch.full_like(fake_scores, a), reduction=reduction)
    return 0.5 * (real + fake)


def torch_lsgan_generator(
    fake_scores: torch.Tensor, c: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    return 0.5 * TF.mse_loss(fake_scores, torch.full_like(fake_scores, c), reduction=reduction)


# ---------------------------------------------------------------- shared sample builders


def _two_batch_samples(g: torch.Generator, scale: float = 2.0) -> list[Sample]:
    return [
        Sample(
            args=(randn(g, 6, scale=scale), randn(g, 4, scale=scale)), desc="batch sizes 6 and 4"
        ),
        Sample(
            args=(randn(g, 5, 1, scale=scale), randn(g, 5, 1, scale=scale)), desc="(N, 1) outputs"
        ),
        Sample(
            args=(randn(g, 2, 3, 3, scale=scale), randn(g, 3, 3, 3, scale=scale)),
            desc="patch outputs (N, H, W), N differs",
        ),
        Sample(args=(randn(g, 3, scale=8.0), randn(g, 7, scale=8.0)), desc="large scores"),
    ]


def _two_batch_errors(real: str, fake: str) -> list[ErrorCase]:
    x = torch.randn(4)
    return [
        ErrorCase(
            args=(x.long(), x),
            kwargs={},
            error=TypeError,
            match=rf"{real} must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, x.long()),
            kwargs={},
            error=TypeError,
            match=rf"{fake} must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, x.double()),
            kwargs={},
            error=TypeError,
            match=rf"{real} and {fake} must have the same dtype",
        ),
        ErrorCase(
            args=([0.5, 1.0], x),
            kwargs={},
            error=TypeError,
            match=rf"{real} must be a torch.Tensor, got list",
        ),
        ErrorCase(
            args=(x, x),
            kwargs={"reduction": "none"},
            error=ValueError,
            match=r"'none' is not a valid value for reduction; expected one of 'mean', 'sum'",
            desc="",
            in_constructor=True,
        ),
    ]


def _two_batch_random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(args=(randn(g, n, scale=3.0), randn(g, c, scale=3.0)), desc=f"random {n} vs {c}")


def _one_batch_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 6, scale=2.0),), desc="(N,)"),
        Sample(args=(randn(g, 4, 1, scale=2.0),), desc="(N, 1)"),
        Sample(args=(randn(g, 2, 3, 3),), desc="patch outputs (N, H, W)"),
    ]


def _one_batch_errors(name: str) -> list[ErrorCase]:
    x = torch.randn(4)
    return [
        ErrorCase(
            args=(x.long(),), kwargs={}, error=TypeError, match=rf"{name} must be a floating.*int64"
        ),
        ErrorCase(
            args=([1.0],),
            kwargs={},
            error=TypeError,
            match=rf"{name} must be a torch.Tensor, got list",
        ),
    ]


# ---------------------------------------------------------------- minimax


def _minimax_d_edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([1e4, -1e4, 0.0, 30.0], dtype=F64)
    return [
        Sample(args=(randn(g, 0), randn(g, 0)), desc="both batches empty"),
        Sample(args=(randn(g, 3), randn(g, 0)), desc="empty fake batch"),
        Sample(args=(big, -big.flip(0)), desc="logits ±1e4"),
    ]


register(
    LossInfo(
        name="minimax_discriminator_loss",
        family="gan",
        formula="E[-log sigmoid(r)] + E[-log(1 - sigmoid(f))]  (separate means)",
        functional=F.minimax_discriminator_loss,
        module=lnn.MinimaxDiscriminatorLoss,
        reference=R.minimax_discriminator_loss,
        torch_functional=torch_minimax_discriminator,
        samples=_two_batch_samples,
        error_cases=lambda: _two_batch_errors("real_logits", "fake_logits"),
        edge_samples=_minimax_d_edges,
        random_sample=_two_batch_random,
        reductions=_PAIRED,
        grad_args=(0, 1),
    )
)


def _minimax_g_samples(g: torch.Generator) -> list[Sample]:
    return [
        *_one_batch_samples(g),
        Sample(args=(randn(g, 6, scale=2.0),), kwargs={"non_saturating": False}, desc="saturating"),
        Sample(
            args=(randn(g, 2, 3, scale=5.0),),
            kwargs={"non_saturating": True},
            desc="non-saturating 2-D",
        ),
    ]


def _minimax_g_edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([1e4, -1e4, 0.0, -30.0], dtype=F64)
    return [
        Sample(args=(randn(g, 0),), desc="empty"),
        Sample(args=(big,), desc="logits ±1e4, non-saturating"),
        Sample(args=(big,), kwargs={"non_saturating": False}, desc="logits ±1e4, saturating"),
    ]


register(
    LossInfo(
        name="minimax_generator_loss",
        family="gan",
        formula="-log sigmoid(f) (non-saturating) or log(1 - sigmoid(f)) (saturating)",
        functional=F.minimax_generator_loss,
        module=lnn.MinimaxGeneratorLoss,
        reference=R.minimax_generator_loss,
        torch_functional=torch_minimax_generator,
        samples=_minimax_g_samples,
        error_cases=lambda: [
            *_one_batch_errors("fake_logits"),
            ErrorCase(
                args=(torch.randn(3),),
                kwargs={"non_saturating": 1},
                error=TypeError,
                match=r"non_saturating must be a bool, got int",
                desc="",
                in_constructor=True,
            ),
        ],
        edge_samples=_minimax_g_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=4.0),), kwargs={"non_saturating": _bool_coin(g)}
        ),
    )
)

# ---------------------------------------------------------------- Wasserstein

register(
    LossInfo(
        name="wasserstein_critic_loss",
        family="gan",
        formula="E[f(fake)] - E[f(real)]",
        functional=F.wasserstein_critic_loss,
        module=lnn.WassersteinCriticLoss,
        reference=R.wasserstein_critic_loss,
        samples=_two_batch_samples,
        error_cases=lambda: _two_batch_errors("real_scores", "fake_scores"),
        random_sample=_two_batch_random,
        reductions=_PAIRED,
        grad_args=(0, 1),
    )
)

register(
    LossInfo(
        name="wasserstein_generator_loss",
        family="gan",
        formula="-E[f(fake)]",
        functional=F.wasserstein_generator_loss,
        module=lnn.WassersteinGeneratorLoss,
        reference=R.wasserstein_generator_loss,
        samples=_one_batch_samples,
        error_cases=lambda: _one_batch_errors("fake_scores"),
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, c, scale=3.0),)),
    )
)

# ---------------------------------------------------------------- least squares


def _lsgan_d_samples(g: torch.Generator) -> list[Sample]:
    base = _two_batch_samples(g)
    return [
        *base,
        Sample(
            args=(randn(g, 5), randn(g, 3)),
            kwargs={"a": -1.0, "b": 1.0},
            desc="a=-1, b=1 (Pearson chi^2)",
        ),
        Sample(
            args=(randn(g, 4, 1), randn(g, 4, 1)), kwargs={"a": 0.1, "b": 0.9}, desc="a=0.1, b=0.9"
        ),
    ]


register(
    LossInfo(
        name="lsgan_discriminator_loss",
        family="gan",
        formula="1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2]",
        functional=F.lsgan_discriminator_loss,
        module=lnn.LSGANDiscriminatorLoss,
        reference=R.lsgan_discriminator_loss,
        torch_functional=torch_lsgan_discriminator,
        samples=_lsgan_d_samples,
        error_cases=lambda: [
            *_two_batch_errors("real_scores", "fake_scores"),
            ErrorCase(
                args=(torch.randn(3), torch.randn(3)),
                kwargs={"a": "0"},
                error=TypeError,
                match=r"a must be a real number, got str",
                desc="",
                in_constructor=True,
            ),
            ErrorCase(
                args=(torch.randn(3), torch.randn(3)),
                kwargs={"b": float("nan")},
                error=ValueError,
                match=r"b must not be NaN",
                desc="",
                in_constructor=True,
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n), randn(g, c)),
            kwargs={"a": float(randn(g, 1)), "b": float(randn(g, 1))},
        ),
        reductions=_PAIRED,
        grad_args=(0, 1),
    )
)

register(
    LossInfo(
        name="lsgan_generator_loss",
        family="gan",
        formula="1/2 E[(D(G(z)) - c)^2]",
        functional=F.lsgan_generator_loss,
        module=lnn.LSGANGeneratorLoss,
        reference=R.lsgan_generator_loss,
        torch_functional=torch_lsgan_generator,
        samples=lambda g: [
            *_one_batch_samples(g),
            Sample(args=(randn(g, 5),), kwargs={"c": 0.0}, desc="c=0"),
            Sample(args=(randn(g, 3, 2),), kwargs={"c": -0.5}, desc="c=-0.5"),
        ],
        error_cases=lambda: [
            *_one_batch_errors("fake_scores"),
            ErrorCase(
                args=(torch.randn(3),),
                kwargs={"c": None},
                error=TypeError,
                match=r"c must be a real number",
                desc="",
                in_constructor=True,
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c),), kwargs={"c": float(randn(g, 1))}
        ),
    )
)

# ---------------------------------------------------------------- hinge

register(
    LossInfo(
        name="hinge_discriminator_loss",
        family="gan",
        formula="E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]",
        functional=F.hinge_discriminator_loss,
        module=lnn.HingeDiscriminatorLoss,
        reference=R.hinge_discriminator_loss,
        samples=_two_batch_samples,
        error_cases=lambda: _two_batch_errors("real_scores", "fake_scores"),
        random_sample=_two_batch_random,
        reductions=_PAIRED,
        grad_args=(0, 1),
    )
)

register(
    LossInfo(
        name="hinge_generator_loss",
        family="gan",
        formula="-E[D(G(z))]",
        functional=F.hinge_generator_loss,
        module=lnn.HingeGeneratorLoss,
        reference=R.hinge_generator_loss,
        samples=_one_batch_samples,
        error_cases=lambda: _one_batch_errors("fake_scores"),
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, c, scale=3.0),)),
    )
)

# ---------------------------------------------------------------- loss-sensitive GAN


def _ls_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(
            args=(rand(g, 6, high=2.0), rand(g, 6, high=2.0), rand(g, 6)),
            desc="margin tensor (N,)",
        ),
        Sample(
            args=(rand(g, 5, high=2.0), rand(g, 5, high=2.0), 0.5),
            kwargs={"lam": 2.0},
            desc="margin float, lam=2",
        ),
        Sample(
            args=(rand(g, 4, 2, high=2.0), rand(g, 4, 2, high=2.0), rand(g, 4, 1)),
            kwargs={"lam": 0.5},
            desc="margin (N, 1) broadcast to (N, 2)",
        ),
        Sample(
            args=(randn(g, 5), randn(g, 5), torch.tensor(0.3, dtype=F64)),
            kwargs={"lam": 0.0},
            desc="0-D margin, lam=0",
        ),
    ]


def _ls_errors() -> list[ErrorCase]:
    r, f = torch.rand(4), torch.rand(4)
    return [
        ErrorCase(
            args=(r, f[:3], 1.0),
            kwargs={},
            error=ValueError,
            match=r"fake_losses size \(3,\).*real_losses size",
        ),
        ErrorCase(
            args=(r, f, torch.ones(3)),
            kwargs={},
            error=ValueError,
            match=r"margin of shape \(3,\) does not broad",
        ),
        ErrorCase(
            args=(r, f, torch.tensor([0.1, -0.2, 0.3, 0.0])),
            kwargs={},
            error=ValueError,
            match=r"margin must be >= 0",
        ),
        ErrorCase(
            args=(r, f, -1.0), kwargs={}, error=ValueError, match=r"margin must be >= 0.*-1\.0"
        ),
        ErrorCase(
            args=(r, f, "1"),
            kwargs={},
            error=TypeError,
            match=r"margin must be a real number, got str",
        ),
        ErrorCase(
            args=(r.long(), f, 1.0),
            kwargs={},
            error=TypeError,
            match=r"real_losses must be a floating",
        ),
        ErrorCase(
            args=(r, f, 1.0),
            kwargs={"lam": -0.5},
            error=ValueError,
            match=r"lam must be in \[0, inf\)",
            desc="",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="loss_sensitive_critic_loss",
        family="gan",
        formula="L(x) + lam * max(0, margin + L(x) - L(G(z)))  (paired samples)",
        functional=F.loss_sensitive_critic_loss,
        module=lnn.LossSensitiveCriticLoss,
        reference=R.loss_sensitive_critic_loss,
        samples=_ls_samples,
        error_cases=_ls_errors,
        random_sample=lambda g, n, c: Sample(
            args=(rand(g, n, c, high=2.0), rand(g, n, c, high=2.0), rand(g, n, 1)),
            kwargs={"lam": float(rand(g, 1, high=3.0))},
        ),
        grad_args=(0, 1),
    )
)

register(
    LossInfo(
        name="loss_sensitive_generator_loss",
        family="gan",
        formula="E[L(G(z))]",
        functional=F.loss_sensitive_generator_loss,
        module=lnn.LossSensitiveGeneratorLoss,
        reference=R.loss_sensitive_generator_loss,
        samples=_one_batch_samples,
        error_cases=lambda: _one_batch_errors("fake_losses"),
        random_sample=lambda g, n, c: Sample(args=(rand(g, n, c, high=2.0),)),
    )
)
