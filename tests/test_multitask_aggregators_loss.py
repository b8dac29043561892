"""Loss-level companions of the aggregators: FAMO, STCH and GradNorm's LibMTL variant, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import losskit.reference as ref
from losskit.multitask import FAMO, STCH, GradNorm


@pytest.fixture(autouse=True)
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- FAMO ----------------------------------------------------------------------------------------


def test_famo_total_and_its_gradient_follow_the_paper():
    famo = FAMO(3, min_losses=[0.0, 0.1, 0.0])
    famo.logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    L = torch.tensor([2.0, 0.6, 0.05], dtype=torch.float64, requires_grad=True)
    total = famo(L)
    z = np.exp([0.3, -0.2, 0.5])
    z /= z.sum()
    D = np.array([2.0, 0.5, 0.05]) + 1e-8
    c = (z / D).sum()
    assert total.item() == pytest.approx((z * np.log(D)).sum() / c, rel=1e-6)
    total.backward()
    np.testing.assert_allclose(L.grad.numpy(), z / (c * D), rtol=1e-6)
    np.testing.assert_allclose(famo.weights.numpy(), z / (c * D), rtol=1e-6)


def test_famo_update_is_adam_on_the_reference_logit_gradient():
    famo = FAMO(3, lr=0.05, weight_decay=0.01)
    xi = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    adam = torch.optim.Adam([xi], lr=0.05, weight_decay=0.01)
    steps = [([2.0, 1.0, 0.5], [1.5, 0.99, 0.45]), ([1.5, 0.99, 0.45], [1.4, 0.7, 0.44])]
    for before, after in steps:
        famo([torch.tensor(v) for v in before])
        famo.update([torch.tensor(v) for v in after])
        xi.grad = torch.from_numpy(
            ref.famo_logits_step(
                xi.detach().numpy(), np.array(before), np.array(after), np.zeros(3)
            )
        )
        adam.step()
        np.testing.assert_allclose(famo.logits.numpy(), xi.detach().numpy(), rtol=1e-5, atol=1e-7)
    # the task whose log-loss fell least (task 2) gained weight
    assert famo.logits[2] > famo.logits[0]


def test_famo_refuses_an_update_without_a_training_call():
    famo = FAMO(2)
    with pytest.raises(RuntimeError, match=r"FAMO.update\(\) needs the losses of a training call"):
        famo.update([torch.tensor(1.0), torch.tensor(1.0)])
    with pytest.raises(ValueError, match=r"losses\[0\] is -1.0; FAMO needs task losses >= 0"):
        famo([torch.tensor(-1.0), torch.tensor(1.0)])


# --- STCH ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.05, 1.0, 10.0])
def test_stch_value_and_gradient_match_the_reference(mu):
    pref, ideal = [1.0, 2.0, 0.5], [0.1, 0.0, 0.2]
    stch = STCH(3, mu=mu, pref_vector=pref, ideal=ideal)
    L = torch.tensor([1.0, 0.3, 4.0], dtype=torch.float64, requires_grad=True)
    total = stch(L)
    assert total.item() == pytest.approx(
        ref.stch_loss(L.detach().numpy(), mu, pref, ideal), rel=1e-6
    )
    total.backward()
    h = 1e-6  # central differences of the reference
    num = [
        (
            ref.stch_loss(L.detach().numpy() + h * e, mu, pref, ideal)
            - ref.stch_loss(L.detach().numpy() - h * e, mu, pref, ideal)
        )
        / (2 * h)
        for e in np.eye(3)
    ]
    np.testing.assert_allclose(L.grad.numpy(), num, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(stch.weights.numpy(), L.grad.numpy(), rtol=1e-6)


def test_stch_tends_to_the_weighted_max_and_does_not_overflow():
    L = torch.tensor([1.0, 3.0, 2.5e4])
    assert STCH(3, mu=1e-3)(L).item() == pytest.approx(2.5e4, rel=1e-6)
    assert math.isfinite(STCH(3, mu=0.01)(L).item())


# --- GradNorm, LibMTL's variant ------------------------------------------------------------------

A = np.array([4.0, -1.0])


def losses_of(W):
    return [3 * (W**2).sum(), 0.5 * ((W - torch.as_tensor(A, dtype=W.dtype)) ** 2).sum()]


def test_gradnorm_libmtl_variant_warmup_softmax_and_epoch_mean_initial_loss():
    W = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    gn = GradNorm.libmtl(2, [W], alpha=1.5)
    # epoch 0 (warm-up): the plain sum, nothing learned; its losses are averaged for L(0)
    epoch0 = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0])]
    recorded = []
    for w0 in epoch0:
        with torch.no_grad():
            W.copy_(w0)
        L = losses_of(W)
        recorded.append([v.item() for v in L])
        total = gn(L)
        assert total.item() == pytest.approx(sum(recorded[-1]))
        assert gn.gradnorm_loss is None and torch.equal(gn.weights, torch.ones(2))
    gn.end_epoch()
    L0 = np.mean(recorded, axis=0)
    np.testing.assert_allclose(gn.initial_losses.numpy(), L0, rtol=1e-6)

    # epoch 1: LibMTL's formulas, weights T·softmax(ξ), r_t = (L_t / L_t(0)) / mean
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([1.3, 0.4]))
        W.copy_(torch.tensor([0.7, 1.1]))
    W.grad = None
    total = gn(losses_of(W))
    total.backward()
    xi = np.array([1.3, 0.4])
    s = np.exp(xi) / np.exp(xi).sum()
    w = 2 * s
    Wn = np.array([0.7, 1.1])
    L = np.array([3 * Wn @ Wn, 0.5 * (Wn - A) @ (Wn - A)])
    norms = np.array([6 * np.linalg.norm(Wn), np.linalg.norm(Wn - A)])
    G = w * norms
    r = (L / L0) / (L / L0).mean()
    target = G.mean() * r**1.5
    dLgrad_dw = np.sign(G - target) * norms
    dw_dxi = 2 * (np.diag(s) - np.outer(s, s))
    np.testing.assert_allclose(gn.task_weights.grad.numpy(), dw_dxi @ dLgrad_dw, rtol=1e-6)
    assert gn.gradnorm_loss.item() == pytest.approx(np.abs(G - target).sum(), rel=1e-6)
    np.testing.assert_allclose(gn.weights.numpy(), w, rtol=1e-6)
    assert total.item() == pytest.approx(w @ L, rel=1e-6)


def test_gradnorm_variant_options_are_checked_and_saved():
    W = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="initial_loss='epoch_mean' needs warmup_epochs >= 1"):
        GradNorm(2, [W], initial_loss="epoch_mean")
    with pytest.raises(ValueError, match="parametrization must be one of"):
        GradNorm(2, [W], parametrization="exp")
    with pytest.raises(ValueError, match="warmup_epochs must be >= 0"):
        GradNorm(2, [W], warmup_epochs=-1)
    gn = GradNorm.libmtl(2, [W])
    with pytest.raises(RuntimeError, match="no training losses were recorded in the first epoch"):
        gn.end_epoch()
    assert set(gn.state_dict()) - {"_extra_state"} == {
        "task_weights",
        "initial_losses",
        "num_steps",
        "num_epochs",
        "epoch_loss_sum",
        "epoch_loss_count",
    }
    # the paper's default keeps its state (and behaviour) unchanged
    assert set(GradNorm(2, [W]).state_dict()) - {"_extra_state"} == {
        "task_weights",
        "initial_losses",
        "num_steps",
    }
