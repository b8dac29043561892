"""Gradient aggregators: each rule against its NumPy reference, its defining property, the backward.

The references (losskit.reference.multitask) work on the gradient vectors with other solvers
(brute-force active sets, scipy, SVD); the properties are the papers' definitions checked directly.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from torch import nn

import losskit.reference as ref
from losskit.multitask.aggregators import (
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradDrop,
    GradientAggregator,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
    _gramian,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def jacobian(seed: int, T: int, n: int = 7, conflict: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(T, n, generator=g, dtype=F64) * torch.logspace(0, 1, T, dtype=F64)[:, None]
    if conflict:  # make sure at least one pair conflicts
        J[1] = -2.0 * J[0] + 0.5 * torch.randn(n, generator=g, dtype=F64)
    return J


CASES = [(seed, T) for seed in range(3) for T in (2, 3, 4)]
REF_CASES = [(0, 2), (1, 3), (2, 4), (3, 3)]


def close(a, b, tol=1e-6):
    a, b = (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in (a, b))
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


# --- each rule against its reference -------------------------------------------------------------


@pytest.mark.parametrize(("seed", "T"), REF_CASES)
def test_gramian_rules_match_their_references(seed, T):
    J = jacobian(seed, T)
    Jn = J.numpy()
    close(MGDA().aggregate(J), ref.mgda_direction(Jn), 1e-9)
    pc = PCGrad(generator=torch.Generator().manual_seed(seed))
    close(pc.aggregate(J), ref.pcgrad_direction(Jn, pc.last_order), 1e-10)
    close(IMTLG().aggregate(J), ref.imtlg_direction(Jn), 1e-8)
    close(UPGrad().aggregate(J), ref.upgrad_direction(Jn), 1e-8)
    pref = np.arange(1.0, T + 1)
    close(UPGrad(pref_vector=pref).aggregate(J), ref.upgrad_direction(Jn, pref), 1e-8)
    for mode in ("min", "median", "rmse"):
        close(AlignedMTL(scale_mode=mode).aggregate(J), ref.aligned_mtl_direction(Jn, None, mode))
    for normalize, max_norm in ((False, 0.0), (True, 0.0), (True, 1.0)):
        nash = NashMTL(normalize=normalize, max_norm=max_norm)
        close(nash.aggregate(J), ref.nashmtl_direction(Jn, normalize, max_norm), 1e-8)
    for c, rescale in ((0.0, 1), (0.4, 1), (0.8, 0), (0.5, 2)):
        close(CAGrad(c, rescale=rescale).aggregate(J), ref.cagrad_direction(Jn, c, rescale), 1e-5)


@pytest.mark.parametrize("T", [2, 3])
def test_gradvac_matches_its_reference_over_calls_with_state(T):
    gv = GradVac(beta=0.3, generator=torch.Generator().manual_seed(1))
    phi = np.zeros((T, T))
    for step in range(3):
        J = jacobian(10 + step, T)
        d = gv.aggregate(J)
        expected, phi = ref.gradvac_direction(J.numpy(), gv.last_order, phi, beta=0.3)
        close(d, expected, 1e-9)
        close(gv.phi_hat.numpy(), phi, 1e-12)


def test_graddrop_matches_its_reference_with_the_same_draws():
    J = jacobian(0, 3, n=50)
    leak = [0.0, 0.2, 1.0]
    d = GradDrop(leak=leak, generator=torch.Generator().manual_seed(5)).aggregate(J)
    U = torch.rand(50, generator=torch.Generator().manual_seed(5), dtype=F64)
    close(d, ref.graddrop_direction(J.numpy(), U.numpy(), leak), 1e-12)


# --- defining properties -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_leaves_no_conflicting_pair_with_two_tasks(seed):
    J = jacobian(seed, 2)
    assert float(J[0] @ J[1]) < 0
    d = PCGrad(generator=torch.Generator().manual_seed(seed)).aggregate(J)
    # d = g1^PC + g2^PC with g1^PC ⟂ g2 and g2^PC ⟂ g1: both tasks improve
    assert (J @ d >= -1e-12).all()
    # and the projections are exactly the paper's
    g1 = J[0] - (J[0] @ J[1]) / (J[1] @ J[1]) * J[1]
    g2 = J[1] - (J[0] @ J[1]) / (J[0] @ J[0]) * J[0]
    close(d, g1 + g2, 1e-12)


def test_pcgrad_without_conflict_is_the_sum():
    J = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0]], dtype=F64)
    close(PCGrad().aggregate(J), J.sum(0), 1e-15)


@pytest.mark.parametrize(("seed", "T"), CASES)
def test_mgda_is_the_min_norm_point_and_a_common_descent_direction(seed, T):
    J = jacobian(seed, T)
    d = MGDA().aggregate(J)
    # no point of the hull is shorter (random convex combinations)
    w = torch.distributions.Dirichlet(torch.ones(T, dtype=F64)).sample((2000,))
    assert float(d @ d) <= float(((w @ J) ** 2).sum(1).min()) + 1e-12
    assert (J @ d >= (d @ d) - 1e-9).all()  # g_t · d >= ||d||² for every task


@pytest.mark.parametrize(("seed", "T"), CASES)
def test_upgrad_conflicts_with_no_task(seed, T):
    J = jacobian(seed, T)
    d = UPGrad().aggregate(J)
    assert (J @ d >= -1e-10 * J.abs().max() ** 2).all()
    assert float(d.norm()) > 0


def test_upgrad_is_the_mean_when_nothing_conflicts():
    J = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [0.1, 0.1, 0.1]], dtype=F64)
    close(UPGrad().aggregate(J), J.mean(0), 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_cagrad_zero_c_is_the_mean_and_c_solves_the_primal(seed):
    J = jacobian(seed, 3)
    close(CAGrad(0.0).aggregate(J), J.mean(0), 1e-12)
    c = 0.5
    d = CAGrad(c, rescale=0).aggregate(J)
    g0 = J.mean(0)
    radius = c * g0.norm()
    assert float((d - g0).norm()) <= float(radius) * (1 + 1e-8)  # in the ball
    # no point of the ball does better on the worst task
    u = torch.randn(4000, J.shape[1], dtype=F64, generator=torch.Generator().manual_seed(seed))
    u = g0 + radius * u / u.norm(dim=1, keepdim=True) * torch.rand(4000, 1, dtype=F64) ** 0.1
    assert float((J @ d).min()) >= float((u @ J.T).min(1).values.max()) - 1e-9


@pytest.mark.parametrize(("seed", "T"), CASES)
def test_imtl_projections_on_every_unit_gradient_are_equal(seed, T):
    J = jacobian(seed, T)
    d = IMTLG().aggregate(J)
    proj = (J / J.norm(dim=1, keepdim=True)) @ d
    close(proj, torch.full_like(proj, float(proj.mean())), 1e-9)


@pytest.mark.parametrize(("seed", "T"), CASES)
def test_nash_weights_satisfy_the_bargaining_condition(seed, T):
    J = jacobian(seed, T)
    G = J @ J.T
    a = NashMTL(normalize=False, max_norm=0.0).weights(G)
    assert (a > 0).all()
    close(a * (G @ a), torch.ones(T, dtype=F64), 1e-10)


@pytest.mark.parametrize(("seed", "T"), CASES)
def test_aligned_mtl_makes_the_singular_values_equal(seed, T):
    J = jacobian(seed, T)
    G = J @ J.T
    # with preference e_i the weights are the i-th column of B; B G B = σ_min² I (condition 1)
    B = torch.stack([AlignedMTL(pref_vector=np.eye(T)[i]).weights(G) for i in range(T)], dim=1)
    close(B @ G @ B, torch.linalg.eigvalsh(G).min() * torch.eye(T, dtype=F64), 1e-8)


def test_gradvac_first_call_with_zero_targets_is_pcgrad():
    J = jacobian(3, 3)
    gv = GradVac(eps=0.0, generator=torch.Generator().manual_seed(0))
    close(gv.aggregate(J), ref.pcgrad_direction(J.numpy(), gv.last_order), 1e-12)


def test_graddrop_keeps_unanimous_coordinates_and_one_sign_elsewhere():
    J = jacobian(1, 3, n=400)
    J[:, 0] = J[:, 0].abs()  # unanimous coordinate
    d = GradDrop(generator=torch.Generator().manual_seed(0)).aggregate(J)
    close(d[0], J[:, 0].sum(), 1e-15)
    pos, neg = J.clamp(min=0).sum(0), J.clamp(max=0).sum(0)
    assert torch.all((d == pos) | (d == neg) | (d == 0))


def test_random_methods_are_reproducible_with_a_seeded_generator():
    J = jacobian(0, 4, n=30)
    for make in (
        lambda s: PCGrad(generator=torch.Generator().manual_seed(s)),
        lambda s: GradDrop(generator=torch.Generator().manual_seed(s)),
    ):
        assert torch.equal(make(7).aggregate(J), make(7).aggregate(J))
    torch.manual_seed(3)  # the global RNG when no generator is given
    a = PCGrad().aggregate(J)
    torch.manual_seed(3)
    assert torch.equal(a, PCGrad().aggregate(J))


# --- the backward: per-task gradients, heads, representation, memory -----------------------------


class Net(nn.Module):
    def __init__(self, T: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(T))

    def losses(self, x, ys):
        h = self.trunk(x)
        return [
            (t + 1.0) ** 2 * ((head(h).squeeze(1) - y) ** 2).mean()
            for t, (head, y) in enumerate(zip(self.heads, ys, strict=True))
        ], h


def setup(T=3, seed=0):
    torch.manual_seed(seed)
    net = Net(T).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 4, generator=g, dtype=F64)
    ys = [torch.randn(12, generator=g, dtype=F64) for _ in range(T)]
    return net, x, ys


def manual(net, losses, wrt):
    """Per-task gradients w.r.t. ``wrt`` (flattened rows) and the heads' plain-sum gradients."""
    J = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(v, wrt, retain_graph=True)])
            for v in losses
        ]
    )
    heads = list(net.heads.parameters())
    plain = torch.autograd.grad(sum(losses), heads, retain_graph=True)
    return J, plain


FACTORIES = {
    "mgda": lambda: MGDA(),
    "pcgrad": lambda: PCGrad(generator=torch.Generator().manual_seed(0)),
    "cagrad": lambda: CAGrad(0.4),
    "imtlg": lambda: IMTLG(),
    "nashmtl": lambda: NashMTL(),
    "aligned": lambda: AlignedMTL(),
    "upgrad": lambda: UPGrad(),
    "gradvac": lambda: GradVac(generator=torch.Generator().manual_seed(0)),
}


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("max_gradients", [2, 3, None])
def test_backward_puts_the_aggregate_on_the_trunk_and_plain_gradients_on_the_heads(
    name, max_gradients
):
    net, x, ys = setup()
    losses, _ = net.losses(x, ys)
    shared = list(net.trunk.parameters())
    J, plain = manual(net, losses, shared)
    expected = FACTORIES[name]().aggregate(J)  # a twin: same seed, same state
    agg = FACTORIES[name]()
    agg.max_gradients = max_gradients
    w = agg.backward(losses, net.trunk.parameters())
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    close(got, expected, 1e-10)
    close(got, w @ J, 1e-10)
    for p, g in zip(net.heads.parameters(), plain, strict=True):
        close(p.grad, g, 1e-12)
    assert agg.last_weights is w


def test_backward_accumulates_into_existing_grads_and_frees_the_graph():
    net, x, ys = setup()
    losses, _ = net.losses(x, ys)
    J, _ = manual(net, losses, list(net.trunk.parameters()))
    for p in net.trunk.parameters():
        p.grad = torch.ones_like(p)
    MGDA().backward(losses, net.trunk.parameters())
    got = torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])
    close(got - 1.0, MGDA().aggregate(J), 1e-10)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        sum(losses).backward()


@pytest.mark.parametrize(
    "agg", [MGDA(), UPGrad(), GradDrop(generator=torch.Generator().manual_seed(0))]
)
def test_shared_representation_mode_aggregates_the_feature_gradients(agg):
    net, x, ys = setup()
    losses, h = net.losses(x, ys)
    R, plain = manual(net, losses, [h])
    twin = (
        type(agg)()
        if not isinstance(agg, GradDrop)
        else GradDrop(generator=torch.Generator().manual_seed(0))
    )
    d_rep = twin.aggregate(R).reshape(h.shape)
    expected = torch.autograd.grad(h, list(net.trunk.parameters()), d_rep, retain_graph=True)
    agg.backward(losses, None, shared_representation=h)
    for p, e in zip(net.trunk.parameters(), expected, strict=True):
        close(p.grad, e, 1e-10)
    for p, g in zip(net.heads.parameters(), plain, strict=True):
        close(p.grad, g, 1e-12)


@pytest.mark.parametrize(
    ("agg", "most"),
    [(MGDA(), 1), (UPGrad(), 1), (PCGrad(), 1), (UPGrad(max_gradients=3), 2), (GradDrop(), 5)],
)
def test_gramian_methods_never_hold_more_than_max_gradients(monkeypatch, agg, most):
    # Counts the *whole* per-task gradients alive at once; the one in flight is streamed
    # parameter by parameter (never whole), which the memory benchmark measures.
    T = 5
    live, peak = set(), [0]
    real = _gramian.per_task_gradients

    def tracked(loss, inputs):
        grads = real(loss, inputs)
        key = object()
        live.add(id(key))
        peak[0] = max(peak[0], len(live))
        # the gradient set is alive while its first tensor is
        weakref.finalize(grads[0], live.discard, id(key))
        keep.append(key)
        return grads

    keep: list = []
    monkeypatch.setattr(_gramian, "per_task_gradients", tracked)
    monkeypatch.setattr("losskit.multitask.aggregators.base.per_task_gradients", tracked)
    net, x, ys = setup(T)
    losses, _ = net.losses(x, ys)
    agg.backward(losses, net.trunk.parameters())
    assert peak[0] == most, peak[0]


@pytest.mark.parametrize(
    ("losses", "params", "error", "match"),
    [
        (lambda L: sum(L), "trunk", ValueError, "losses is one scalar; pass one loss per task"),
        (
            lambda L: [L[0], L[1].detach()],
            "trunk",
            ValueError,
            r"losses\[1\] does not require grad",
        ),
        (lambda L: [L[0], L[1].expand(2)], "trunk", ValueError, r"losses\[1\] must be a scalar"),
        (lambda L: [L[0], 3.0], "trunk", TypeError, r"losses\[1\] must be a torch.Tensor"),
        (lambda L: [], "trunk", ValueError, "losses is empty"),
        (lambda L: L, [], ValueError, "shared_parameters is empty"),
        (lambda L: L, 3, TypeError, "shared_parameters must be an iterable of tensors"),
        (lambda L: L, [torch.zeros(2)], ValueError, r"shared_parameters\[0\].*must require grad"),
    ],
)
def test_bad_calls_raise_clear_errors(losses, params, error, match):
    net, x, ys = setup()
    L, _ = net.losses(x, ys)
    with pytest.raises(error, match=match):
        MGDA().backward(losses(L), net.trunk.parameters() if params == "trunk" else params)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: MGDA(max_gradients=1), ValueError, "max_gradients must be >= 2"),
        (lambda: MGDA(max_gradients=2.0), TypeError, "max_gradients must be an int"),
        (lambda: MGDA(sync="all"), ValueError, "sync must be one of"),
        (lambda: MGDA(normalization="l1"), ValueError, "normalization must be one of"),
        (lambda: CAGrad(-0.1), ValueError, "c must be a finite number"),
        (lambda: CAGrad(0.4, rescale=3), ValueError, "rescale must be one of"),
        (lambda: NashMTL(update_weights_every=0), ValueError, "update_weights_every must be >= 1"),
        (lambda: GradVac(beta=1.5), ValueError, r"beta must be a finite number in \[0, 1\]"),
        (lambda: AlignedMTL(scale_mode="max"), ValueError, "scale_mode must be one of"),
        (lambda: UPGrad(pref_vector=[1.0, -1.0]), ValueError, "pref_vector must hold"),
        (lambda: GradDrop(leak=[2.0]), ValueError, r"leak must hold numbers in \[0, 1\]"),
        (lambda: PCGrad(generator=0), TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_non_finite_gradients_without_a_scaler_are_an_error():
    net, x, ys = setup()
    losses, _ = net.losses(x, ys)
    with pytest.raises(ValueError, match="per-task gradients are not finite"):
        MGDA().backward([losses[0] * float("inf"), losses[1]], net.trunk.parameters())


def test_state_dict_round_trip_of_stateful_aggregators():
    J = jacobian(0, 3)
    for make in (lambda: GradVac(generator=torch.Generator().manual_seed(0)), lambda: NashMTL()):
        a = make()
        a.aggregate(J)
        b = make()
        b.load_state_dict(a.state_dict())
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k


def test_every_aggregator_is_exported_and_documented():
    import losskit.multitask.aggregators as A

    assert len(set(A.__all__)) == len(A.__all__) == 10
    for name in A.__all__:
        cls = getattr(A, name)
        assert issubclass(cls, GradientAggregator)
        if cls is not GradientAggregator:
            doc = cls.__doc__
            for section in ("Args:", "Example:", ".. math::", "Memory:", "Reference"):
                assert section in doc, (name, section)


README_EXAMPLE = """
import torch
import torch.nn.functional as F
from torch import nn
from losskit.multitask.aggregators import UPGrad

trunk = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
depth_head, seg_head = nn.Linear(32, 1), nn.Linear(32, 5)
params = [*trunk.parameters(), *depth_head.parameters(), *seg_head.parameters()]
opt = torch.optim.Adam(params, lr=1e-2)
aggregator = UPGrad()  # holds at most 2 full per-task gradients of the trunk

x, depth, seg = torch.randn(64, 8), torch.randn(64), torch.randint(5, (64,))
for step in range(20):
    h = trunk(x)
    losses = [F.mse_loss(depth_head(h).squeeze(1), depth), F.cross_entropy(seg_head(h), seg)]
    opt.zero_grad()
    weights = aggregator.backward(losses, trunk.parameters())  # instead of sum(losses).backward()
    opt.step()
print(weights)  # the last step's task weights: the trunk got Σ_t w_t ∇L_t, the heads ∇L_t
"""


def test_readme_example_runs(capsys):
    namespace: dict = {}
    exec(compile(README_EXAMPLE, "README", "exec"), namespace)
    assert "tensor(" in capsys.readouterr().out
    w = namespace["weights"]
    assert w.shape == (2,) and (w > 0).all()
