"""GradNorm (Chen et al. 2018): the GradNorm gradient by hand, its direction, renormalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from losskit.multitask import GradNorm


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny tensors: intra-op threads only add overhead, and much more on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


A = np.array([4.0, -1.0])


def quadratic_losses(W: torch.Tensor):
    """L1 = 3·|W|², L2 = 0.5·|W - A|²: gradient norms 6|W| and |W - A| (by hand)."""
    return [3 * (W**2).sum(), 0.5 * ((W - torch.as_tensor(A, dtype=W.dtype)) ** 2).sum()]


def hand_gradnorm(w, W, L0, alpha):
    """(L_grad, dL_grad/dw, L) from the paper's formulas, in NumPy."""
    L = np.array([3 * W @ W, 0.5 * (W - A) @ (W - A)])
    g = np.array([6 * np.linalg.norm(W), np.linalg.norm(W - A)])
    G = w * g
    rel = L / L0
    r = rel / rel.mean()
    target = G.mean() * r**alpha
    return np.abs(G - target).sum(), np.sign(G - target) * g, L


def test_gradnorm_gradient_and_loss_match_the_paper_formula():
    alpha = 1.5
    W = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    gn = GradNorm(2, [W], alpha=alpha)
    # first call: L(0) is recorded, r = 1, the target is the mean gradient norm
    total = gn(quadratic_losses(W))
    total.backward()
    L_grad, dw, L0 = hand_gradnorm(np.ones(2), W.detach().numpy(), None or np.ones(2), alpha)
    L0 = np.array([15.0, 9.0])
    L_grad, dw, _ = hand_gradnorm(np.ones(2), W.detach().numpy(), L0, alpha)
    assert gn.initial_losses.tolist() == pytest.approx(L0.tolist())
    assert gn.gradnorm_loss.item() == pytest.approx(L_grad, rel=1e-6)
    assert gn.task_weights.grad.tolist() == pytest.approx(dw.tolist(), rel=1e-6)
    assert dw[0] > 0 > dw[1]  # the larger gradient (task 0) is pushed down, the smaller up
    # the network gets sum_t w_t grad L_t and nothing from the GradNorm term
    assert W.grad.tolist() == pytest.approx((6 * np.array([1.0, 2.0]) + ([1.0, 2.0] - A)).tolist())
    assert total.item() == pytest.approx(L0.sum())

    # second call, other weights and other parameters: the relative rates enter through r^alpha
    with torch.no_grad():
        W.copy_(torch.tensor([0.5, 1.0]))
        gn.task_weights.copy_(torch.tensor([0.5, 1.5]))
    gn.task_weights.grad = None
    W.grad = None
    total = gn(quadratic_losses(W))
    total.backward()
    L_grad, dw, L = hand_gradnorm(np.array([0.5, 1.5]), W.detach().numpy(), L0, alpha)
    assert total.item() == pytest.approx(0.5 * L[0] + 1.5 * L[1], rel=1e-6)
    assert gn.gradnorm_loss.item() == pytest.approx(L_grad, rel=1e-6)
    assert gn.task_weights.grad.tolist() == pytest.approx(dw.tolist(), rel=1e-6)
    assert W.grad.tolist() == pytest.approx(
        (0.5 * 6 * np.array([0.5, 1.0]) + 1.5 * (np.array([0.5, 1.0]) - A)).tolist(), rel=1e-6
    )


def test_slower_task_gets_more_weight():
    # Equal gradients, but task 1's loss has fallen less (a constant offset changes the loss value
    # and not its gradient): r_1 > r_0, so its target norm is larger and its weight grows.
    W = torch.tensor([1.0, -2.0], requires_grad=True)
    gn = GradNorm(2, [W], alpha=1.0)
    opt = torch.optim.SGD(gn.parameters(), lr=0.05)
    for offset in (0.0, 1.0, 1.0, 1.0):
        f = (W**2).sum()
        total = gn([f, f + offset])
        opt.zero_grad()
        total.backward()
        opt.step()
        gn.renormalize_()
        w = gn.weights
        assert w.sum().item() == pytest.approx(2.0, abs=1e-6)
    assert w[1] > 1.0 > w[0]


def make_toy(seed=0):
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
    heads = nn.ModuleList([nn.Linear(16, 1), nn.Linear(16, 1)])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=g)
    y = torch.stack([x[:, 0] - x[:, 1], torch.sin(2 * x[:, 2])], 1)
    return trunk, heads, x, y


def toy_losses(trunk, heads, x, y, scale=(1.0, 10.0)):
    h = trunk(x)
    return [s * ((heads[t](h).squeeze(1) - y[:, t]) ** 2).mean() for t, s in enumerate(scale)]


def grad_norms(trunk, losses, w):
    shared = list(trunk[2].parameters())
    out = []
    for wt, L in zip(w, losses, strict=True):
        gs = torch.autograd.grad(wt * L, shared, retain_graph=True)
        out.append(math.sqrt(sum(float((g**2).sum()) for g in gs)))
    return out


def test_gradnorm_balances_gradient_norms_on_a_toy_two_task_problem():
    trunk, heads, x, y = make_toy()
    gn = GradNorm(2, trunk[2].parameters(), alpha=0.0)  # alpha = 0: equalise the norms only
    opt = torch.optim.Adam(
        [{"params": [*trunk.parameters(), *heads.parameters()]}, {"params": gn.parameters()}],
        lr=0.01,
    )
    before = grad_norms(trunk, toy_losses(trunk, heads, x, y), [1.0, 1.0])
    assert before[1] > 3 * before[0]  # task 1's loss is scaled by 10: a larger gradient
    first_total = None
    for _ in range(80):
        losses = toy_losses(trunk, heads, x, y)
        total = gn(losses)
        first_total = first_total or total.item()
        assert gn.weights.sum().item() == pytest.approx(2.0, abs=1e-5)
        opt.zero_grad()
        total.backward()
        opt.step()
    w = gn.weights
    assert w[0] > 1.0 > w[1]  # the task with the smaller gradient norm got more weight
    after = grad_norms(trunk, toy_losses(trunk, heads, x, y), w.tolist())
    assert abs(math.log(after[1] / after[0])) < 0.5 * abs(math.log(before[1] / before[0]))
    assert math.isfinite(total.item()) and total.item() < first_total


def test_renormalisation_clamps_and_rescales_to_the_number_of_tasks():
    W = torch.tensor([1.0, 1.0], requires_grad=True)
    gn = GradNorm(3, [W])
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([3.0, 1.0, -2.0]))
    w = gn.weights  # always renormalised, even before the next call
    assert w.tolist() == pytest.approx([2.25, 0.75, 0.75e-6], rel=1e-5)
    f = (W**2).sum()
    gn([f, 2 * f, 3 * f])
    assert gn.task_weights.detach().tolist() == pytest.approx(w.tolist(), rel=1e-5)
    assert gn.task_weights.sum().item() == pytest.approx(3.0)


def test_eval_and_no_grad_give_a_plain_weighted_sum():
    W = torch.tensor([1.0, 2.0], requires_grad=True)
    gn = GradNorm(2, [W])
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.5, 1.5]))
        total = gn(quadratic_losses(W))
    assert gn.gradnorm_loss is None
    assert total.item() == pytest.approx(0.5 * 15 + 1.5 * 9)
    gn.eval()
    total = gn([torch.tensor(2.0), torch.tensor(4.0)])  # no graph needed in eval mode
    assert total.item() == pytest.approx(0.5 * 2 + 1.5 * 4)
    assert int(gn.num_steps) == 0  # L(0) not taken outside training


def test_two_calls_before_one_backward_gradient_accumulation():
    W = torch.tensor([1.0, 2.0], requires_grad=True)
    gn = GradNorm(2, [W])
    t1 = gn(quadratic_losses(W))
    with torch.no_grad():
        gn.task_weights.mul_(1.5)  # as if an optimizer stepped: the next call renormalises in place
    t2 = gn(quadratic_losses(W))
    (t1 + t2).backward()  # the first graph is unaffected by the in-place renormalisation
    assert torch.isfinite(gn.task_weights.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": -0.5}, ValueError, r"alpha must be in \[0, inf\), got -0.5"),
        ({"alpha": math.inf}, ValueError, "alpha must be finite"),
        ({"shared_parameters": []}, ValueError, "shared_parameters is empty"),
        ({"shared_parameters": 3}, TypeError, "shared_parameters must be an iterable"),
        ({"shared_parameters": [torch.ones(2)]}, ValueError, r"shared_parameters\[0\].*require"),
        ({"shared_parameters": ["w"]}, TypeError, r"shared_parameters\[0\] must be a torch.Tensor"),
    ],
)
def test_bad_hyper_parameters(kwargs, error, match):
    kwargs = {"shared_parameters": [torch.ones(2, requires_grad=True)], **kwargs}
    with pytest.raises(error, match=match):
        GradNorm(2, **kwargs)


def test_bad_losses():
    W = torch.tensor([1.0, 2.0], requires_grad=True)
    other = torch.tensor(1.0, requires_grad=True)
    gn = GradNorm(2, [W])
    with pytest.raises(ValueError, match=r"losses\[1\] does not depend on shared_parameters"):
        gn([(W**2).sum(), other * 2])
    with pytest.raises(ValueError, match="attached to the model's autograd graph"):
        gn([torch.tensor(1.0), torch.tensor(2.0)])
    with pytest.raises(ValueError, match=r"losses\[0\] is 0.0; GradNorm needs task losses >= 0"):
        gn([(W * 0).sum(), (W**2).sum()])  # a zero first loss cannot be the reference L(0)
    with pytest.raises(ValueError, match=r"losses\[1\] is -5.0"):
        gn([(W**2).sum(), -(W**2).sum()])
