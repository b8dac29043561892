"""GAN losses: closed-form values, the separate-means convention, and the WGAN-GP penalty per sample.

The registry (specs/gan.py) already runs every GAN loss against its NumPy reference and the minimax /
least-squares ones against torch; this file checks what a reference cannot: values written out by
hand, the gradient behaviour of the saturating loss, and ``gradient_penalty``, which takes a critic.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from losskit import gan
from losskit import nn as lnn

F64 = torch.float64


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# ---------------------------------------------------------------- closed forms


def test_minimax_discriminator_closed_form():
    # D(x) = 3/4 and D(G(z)) = 1/4: each term is -log(3/4).
    real, fake = t(math.log(3.0)), t(math.log(1.0 / 3.0))
    expected = -2.0 * math.log(0.75)
    assert gan.minimax_discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-12)
    # Logits 0: D = 1/2 everywhere, 2 log 2 per pair of means.
    zeros = torch.zeros(5, dtype=F64)
    assert gan.minimax_discriminator_loss(zeros, zeros[:3]).item() == pytest.approx(2 * math.log(2))


def test_two_batch_losses_take_separate_means():
    # 2 real samples and 6 fake ones: the mean of each batch, not the mean of the pooled 8 terms.
    real, fake = t(0.0, 0.0), t(*([math.log(3.0)] * 6))
    separate = math.log(2.0) + math.log(4.0)  # -log(1/2) + -log(1 - 3/4)
    pooled = (2 * math.log(2.0) + 6 * math.log(4.0)) / 8
    out = gan.minimax_discriminator_loss(real, fake).item()
    assert out == pytest.approx(separate, rel=1e-12)
    assert out != pytest.approx(pooled)
    assert gan.minimax_discriminator_loss(real, fake, reduction="sum").item() == pytest.approx(
        2 * math.log(2.0) + 6 * math.log(4.0)
    )


def test_minimax_generator_forms():
    f = t(math.log(1.0 / 3.0))  # D(G(z)) = 1/4
    ns = gan.minimax_generator_loss(f).item()
    sat = gan.minimax_generator_loss(f, non_saturating=False).item()
    assert ns == pytest.approx(math.log(4.0), rel=1e-12)
    assert sat == pytest.approx(math.log(0.75), rel=1e-12)


def test_saturating_generator_gradient_vanishes_where_non_saturating_does_not():
    # A confidently rejected sample (D(G(z)) ~ 2e-9): d/df log(1 - σ(f)) = -σ(f) ~ 0, while
    # d/df -log σ(f) = σ(f) - 1 ~ -1. This is the reason for the non-saturating trick.
    f = t(-20.0).requires_grad_()
    (g_sat,) = torch.autograd.grad(gan.minimax_generator_loss(f, non_saturating=False), f)
    (g_ns,) = torch.autograd.grad(gan.minimax_generator_loss(f), f)
    assert abs(g_sat.item()) == pytest.approx(1.0 / (1.0 + math.exp(20.0)), rel=1e-9)
    assert g_ns.item() == pytest.approx(-1.0, abs=1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_minimax_finite_at_extreme_logits(dtype):
    x = torch.tensor([1e4, -1e4, 0.0], dtype=dtype, requires_grad=True)
    for loss in (
        gan.minimax_discriminator_loss(x, x),
        gan.minimax_generator_loss(x),
        gan.minimax_generator_loss(x, non_saturating=False),
    ):
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all()


def test_wasserstein_closed_form():
    real, fake = t(1.0, 2.0, 3.0), t(0.0, 5.0)
    assert gan.wasserstein_critic_loss(real, fake).item() == pytest.approx(0.5)
    assert gan.wasserstein_critic_loss(real, fake, reduction="sum").item() == pytest.approx(-1.0)
    assert gan.wasserstein_generator_loss(fake).item() == pytest.approx(-2.5)
    torch.testing.assert_close(gan.wasserstein_generator_loss(fake, reduction="none"), -fake)


def test_lsgan_closed_form():
    # a=0, b=1: a perfect discriminator has loss 0, the opposite one 1/2 + 1/2.
    assert gan.lsgan_discriminator_loss(t(1.0, 1.0), t(0.0)).item() == 0.0
    assert gan.lsgan_discriminator_loss(t(0.0), t(1.0, 1.0, 1.0)).item() == pytest.approx(1.0)
    # a=-1, b=1: real 0 -> 1/2 (0-1)^2, fake 0 -> 1/2 (0+1)^2.
    assert gan.lsgan_discriminator_loss(t(0.0), t(0.0), a=-1.0, b=1.0).item() == pytest.approx(1.0)
    assert gan.lsgan_generator_loss(t(0.0, 2.0)).item() == pytest.approx(0.5)
    assert gan.lsgan_generator_loss(t(0.0, 2.0), c=0.0).item() == pytest.approx(1.0)


def test_hinge_closed_form():
    real, fake = t(2.0, 0.5, -1.0), t(-2.0, 0.0)
    # relu(1 - r) = [0, 0.5, 2], relu(1 + f) = [0, 1]
    assert gan.hinge_discriminator_loss(real, fake).item() == pytest.approx(2.5 / 3 + 0.5)
    assert gan.hinge_discriminator_loss(real, fake, reduction="sum").item() == pytest.approx(3.5)
    assert gan.hinge_generator_loss(fake).item() == pytest.approx(1.0)


def test_loss_sensitive_closed_form_and_gradient():
    real = t(0.2, 1.0).requires_grad_()
    fake = t(1.0, 0.5).requires_grad_()
    margin = t(0.5, 0.3)
    # pair 1: 0.2 + 2 relu(0.5 + 0.2 - 1.0) = 0.2; pair 2: 1.0 + 2 relu(0.3 + 1.0 - 0.5) = 2.6
    loss = gan.loss_sensitive_critic_loss(real, fake, margin, lam=2.0)
    assert loss.item() == pytest.approx(1.4)
    loss.backward()
    torch.testing.assert_close(real.grad, t(0.5, 1.5))  # (1 + lam * active) / N
    torch.testing.assert_close(fake.grad, t(0.0, -1.0))  # -lam * active / N
    none = gan.loss_sensitive_critic_loss(real, fake, 0.0, lam=1.0, reduction="none")
    torch.testing.assert_close(none, t(0.2, 1.5))
    assert gan.loss_sensitive_generator_loss(t(1.0, 3.0)).item() == 2.0


@pytest.mark.parametrize(
    "module",
    [
        lnn.MinimaxDiscriminatorLoss,
        lnn.WassersteinCriticLoss,
        lnn.LSGANDiscriminatorLoss,
        lnn.HingeDiscriminatorLoss,
    ],
)
def test_two_batch_modules_refuse_reduction_none(module):
    with pytest.raises(ValueError, match=r"'none' is not a valid value for reduction"):
        module(reduction="none")


# ---------------------------------------------------------------- gradient penalty


class Recorder(nn.Module):
    """Wraps a critic and keeps the batch it was called with."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return self.critic(x)


class HalfSquaredNorm(nn.Module):
    """f(x_i) = ||x_i||^2 / 2, whose gradient at x_i is x_i itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.flatten(1).pow(2).sum(1)


def _conv_critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1)
    ).double()


def test_linear_critic_penalty_and_parameter_gradient_closed_form():
    # f(x) = <w, x>: every sample's gradient is w, whatever the interpolation.
    critic = nn.Linear(6, 1, bias=True).double()
    real, fake = torch.randn(5, 6, dtype=F64), torch.randn(5, 6, dtype=F64)
    w = critic.weight.detach().flatten()
    norm = w.norm().item()
    gp = gan.gradient_penalty(critic, real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-10)
    gp.backward()  # create_graph=True: the penalty reaches the critic's parameters
    expected = 10.0 * 2.0 * (norm - 1.0) * w / norm
    torch.testing.assert_close(critic.weight.grad.flatten(), expected)


def test_penalty_uses_per_sample_norms():
    # real == fake, so x_hat == real whatever epsilon; the gradient of sample i is x_i.
    x = torch.tensor([[3.0, 4.0], [0.6, 0.8], [0.0, 0.5]], dtype=F64)
    per_sample = x.norm(dim=1)  # 5, 1, 0.5
    expected = ((per_sample - 1.0) ** 2).mean().item()  # (16 + 0 + 0.25) / 3
    gp = gan.gradient_penalty(HalfSquaredNorm(), x, x.clone(), weight=1.0)
    assert gp.item() == pytest.approx(expected, rel=1e-12)
    none = gan.gradient_penalty(HalfSquaredNorm(), x, x.clone(), weight=2.0, reduction="none")
    torch.testing.assert_close(none, 2.0 * (per_sample - 1.0) ** 2)
    # Norms that mix samples give other values: the norm of the whole batch's gradient, or the
    # mean of element-wise (|g| - 1)^2.
    whole_batch = (x.norm() - 1.0) ** 2
    element_wise = ((x.abs() - 1.0) ** 2).mean()
    assert gp.item() != pytest.approx(whole_batch.item())
    assert gp.item() != pytest.approx(element_wise.item())


def test_interpolation_is_one_epsilon_per_sample():
    critic = Recorder(HalfSquaredNorm())
    real = torch.rand(64, 3, 2, dtype=F64) + 1.0
    fake = -torch.rand(64, 3, 2, dtype=F64)
    gp = gan.gradient_penalty(critic, real, fake, weight=1.0, reduction="none")
    x_hat = critic.seen
    eps = (x_hat - fake) / (real - fake)  # element-wise solve of eps r + (1 - eps) f
    torch.testing.assert_close(eps, eps[:, :1, :1].expand_as(eps))  # one value per sample
    assert (eps >= 0).all() and (eps <= 1).all()
    assert eps[:, 0, 0].std() > 0.1  # drawn independently per sample
    # The value with the interpolates the critic saw: the gradient of ||x||^2/2 is x_hat.
    torch.testing.assert_close(gp, (x_hat.flatten(1).norm(dim=1) - 1.0) ** 2)


def test_penalty_matches_a_per_sample_loop_with_a_conv_critic():
    critic = Recorder(_conv_critic())
    real, fake = torch.randn(4, 2, 4, 4, dtype=F64), torch.randn(4, 2, 4, 4, dtype=F64)
    gp = gan.gradient_penalty(critic, real, fake, weight=10.0, target_norm=0.5, reduction="none")
    expected = []
    for xi in critic.seen:  # the oracle: one sample at a time, its own autograd.grad
        xi = xi.unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic.critic(xi).sum(), xi)
        expected.append(10.0 * (g.norm() - 0.5) ** 2)
    torch.testing.assert_close(gp, torch.stack(expected))


def test_generator_makes_the_penalty_reproducible():
    critic = _conv_critic()
    real, fake = torch.randn(6, 2, 4, 4, dtype=F64), torch.randn(6, 2, 4, 4, dtype=F64)

    def run(seed: int) -> torch.Tensor:
        return gan.gradient_penalty(
            critic, real, fake, generator=torch.Generator().manual_seed(seed)
        )

    assert run(3).item() == run(3).item()
    assert run(3).item() != run(4).item()
    module = lnn.GradientPenalty(weight=10.0)
    assert module(critic, real, fake, torch.Generator().manual_seed(3)).item() == run(3).item()


def test_penalty_does_not_reach_the_generator_and_sum_is_n_times_mean():
    critic = _conv_critic()
    real = torch.randn(3, 2, 4, 4, dtype=F64)
    fake = torch.randn(3, 2, 4, 4, dtype=F64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    mean = gan.gradient_penalty(critic, real, fake, generator=g)
    g = torch.Generator().manual_seed(0)
    total = gan.gradient_penalty(critic, real, fake, generator=g, reduction="sum")
    assert total.item() == pytest.approx(3 * mean.item())
    mean.backward()
    assert fake.grad is None
    # The input gradient depends on every weight (not on the last bias).
    assert critic[0].weight.grad is not None and critic[3].weight.grad is not None


def test_zero_critic_gradient_gives_target_norm_squared_and_finite_gradients():
    critic = nn.Linear(4, 1).double()
    nn.init.zeros_(critic.weight)  # f(x) = b: the gradient w.r.t. x is exactly 0
    real, fake = torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    gp = gan.gradient_penalty(critic, real, fake, weight=10.0, target_norm=1.0)
    assert gp.item() == pytest.approx(10.0)
    gp.backward()
    assert torch.isfinite(critic.weight.grad).all()  # sqrt at 0 would give NaN
    # A critic that ignores its input entirely (no graph to x_hat).
    out = gan.gradient_penalty(lambda x: torch.zeros(x.shape[0]), real, fake, target_norm=0.5)
    assert out.item() == pytest.approx(10.0 * 0.25)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (
            ("critic", torch.zeros(2, 3), torch.zeros(2, 3)),
            {},
            TypeError,
            r"critic must be callable",
        ),
        ((HalfSquaredNorm(), torch.zeros(2, 3), torch.zeros(3, 3)), {}, ValueError, r"fake size"),
        ((HalfSquaredNorm(), torch.zeros(()), torch.zeros(())), {}, ValueError, r"batch dimension"),
        ((lambda x: x.sum(), torch.zeros(2, 3), torch.zeros(2, 3)), {}, ValueError, r"one score"),
        (
            (HalfSquaredNorm(), torch.zeros(2, 3), torch.zeros(2, 3)),
            {"weight": -1.0},
            ValueError,
            r"weight must be in \[0, inf\)",
        ),
        (
            (HalfSquaredNorm(), torch.zeros(2, 3), torch.zeros(2, 3)),
            {"generator": 0},
            TypeError,
            r"generator must be a torch.Generator",
        ),
        (
            (HalfSquaredNorm(), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)),
            {},
            TypeError,
            r"real must be a floating",
        ),
        (
            (HalfSquaredNorm(), torch.zeros(2, 3), torch.zeros(2, 3)),
            {"reduction": "avg"},
            ValueError,
            r"'avg' is not a valid value for reduction",
        ),
    ],
)
def test_gradient_penalty_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        gan.gradient_penalty(*args, **kwargs)


def test_gan_namespace_exports():
    import losskit

    assert set(gan.__all__) >= {
        "minimax_discriminator_loss",
        "gradient_penalty",
        "loss_sensitive_critic_loss",
    }
    assert not hasattr(losskit, "gradient_penalty")  # not star-imported into the top level
    assert losskit.gan.hinge_generator_loss is gan.hinge_generator_loss
