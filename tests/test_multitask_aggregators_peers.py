"""Optional: the aggregators against TorchJD 0.18 and LibMTL 1.1 on the same per-task gradients.

Skipped cleanly when a peer is not importable (``pip install -e ".[multitask-peers]"``; install
them with ``--no-deps`` so torch is not replaced). LibMTL's package ``__init__`` imports
torchvision, so its weighting modules are loaded without it. Where a peer differs, the aggregator's
docstring says how, and the test checks that documented relation instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from losskit.multitask import GradNorm
from losskit.multitask.aggregators import (
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradDrop,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)

F64 = torch.float64


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.abs().max()))


def jacobian(seed: int, T: int, n: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(T, n, generator=g, dtype=F64)
    J[1] = -0.8 * J[0] + 0.4 * J[1]  # a conflicting pair
    return J


# --- TorchJD -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tjd():
    return pytest.importorskip("torchjd.aggregation", reason="TorchJD is not installed")


@pytest.mark.parametrize(("seed", "T"), [(0, 2), (1, 3), (2, 4)])
def test_same_aggregate_as_torchjd(tjd, seed, T):
    J = jacobian(seed, T)
    close(IMTLG().aggregate(J), tjd.IMTLG()(J))
    for mode in ("min", "median", "rmse"):
        close(AlignedMTL(scale_mode=mode).aggregate(J), tjd.AlignedMTL(scale_mode=mode)(J))
    # TorchJD solves on G/tr(G) + 1e-4·I with quadprog; the same options give the same answer
    pytest.importorskip("quadprog")
    close(UPGrad(norm_eps=1e-4, reg_eps=1e-4).aggregate(J), tjd.UPGrad()(J))
    # random methods: same draws from the global RNG, in the same order
    for ours, theirs in (
        (PCGrad(), tjd.PCGrad()),
        (GradVac(), tjd.GradVac()),
        (GradDrop(), tjd.GradDrop()),
    ):
        for step in range(2):  # GradVac's targets carry over
            M = jacobian(seed + step, T)
            torch.manual_seed(100 + step)
            a = ours.aggregate(M)
            torch.manual_seed(100 + step)
            close(a, theirs(M))


@pytest.mark.parametrize("T", [2, 3])
def test_mgda_agrees_with_torchjd_frank_wolfe_up_to_its_tolerance(tjd, T):
    # TorchJD stops Frank-Wolfe at a step < epsilon; with a tiny epsilon it reaches the exact point
    J = jacobian(3, T)
    close(MGDA().aggregate(J), tjd.MGDA(epsilon=1e-12, max_iters=100_000)(J), 1e-5)


def test_cagrad_and_nashmtl_match_torchjd_where_cvxpy_is_installed(tjd):
    pytest.importorskip("cvxpy")
    J = jacobian(4, 3)
    close(CAGrad(0.5, rescale=0).aggregate(J), tjd.CAGrad(c=0.5)(J), 1e-5)
    close(NashMTL(max_norm=0.0).aggregate(J), tjd.NashMTL(n_tasks=3, max_norm=0.0)(J), 1e-3)


# --- LibMTL --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def libmtl():
    spec = importlib.util.find_spec("LibMTL")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("LibMTL is not installed")
    saved = {k: v for k, v in sys.modules.items() if k == "LibMTL" or k.startswith("LibMTL.")}
    stub = types.ModuleType("LibMTL")  # skip LibMTL/__init__.py (it imports torchvision)
    stub.__path__ = [str(Path(next(iter(spec.submodule_search_locations))))]
    sys.modules["LibMTL"] = stub
    try:
        yield importlib.import_module("LibMTL.weighting")
    finally:
        for k in [k for k in sys.modules if k == "LibMTL" or k.startswith("LibMTL.")]:
            del sys.modules[k]
        sys.modules.update(saved)


class Net(nn.Module):
    def __init__(self, T: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh()).double()
        self.heads = nn.ModuleList(nn.Linear(5, 1).double() for _ in range(T))

    def losses(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(10, 4, generator=g, dtype=F64)
        h = self.trunk(x)
        return [
            (t + 1.0) * ((head(h).squeeze(1) - torch.randn(10, generator=g, dtype=F64)) ** 2).mean()
            for t, head in enumerate(self.heads)
        ]


def harness(cls, net: Net):
    """A LibMTL weighting bound to ``net.trunk`` as its shared parameters (what its trainer does)."""

    class Bound(cls):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.task_num, self.device, self.rep_grad, self.epoch = (
                net,
                len(net.heads),
                "cpu",
                False,
                0,
            )
            self.init_param()

        def get_share_params(self):
            return self.net.trunk.parameters()

        def zero_grad_share_params(self):
            self.net.trunk.zero_grad(set_to_none=False)

    return Bound()


def trunk_grad(net):
    return torch.cat([p.grad.reshape(-1) for p in net.trunk.parameters()])


def ours_and_theirs(ours, their_cls, T, seed=0, **kwargs):
    a, b = Net(T), Net(T)
    ours.backward(a.losses(seed), a.trunk.parameters())
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # LibMTL allocates its gradient matrix in the default dtype
    try:
        harness(their_cls, b).backward(torch.stack(b.losses(seed)), **kwargs)
    finally:
        torch.set_default_dtype(previous)
    for p, q in zip(a.heads.parameters(), b.heads.parameters(), strict=True):
        close(p.grad, q.grad, 1e-12)  # both give the heads their plain gradients
    return trunk_grad(a), trunk_grad(b)


def test_same_trunk_gradient_as_libmtl(libmtl):
    close(*ours_and_theirs(MGDA(), libmtl.MGDA, 2, mgda_gn="none"))
    close(*ours_and_theirs(MGDA(normalization="l2"), libmtl.MGDA, 2, mgda_gn="l2"))
    close(*ours_and_theirs(PCGrad(), libmtl.PCGrad, 2))  # two tasks: the order does not matter
    close(*ours_and_theirs(IMTLG(), libmtl.IMTL, 3))  # IMTL-L's scales start at 1: IMTL-G alone
    close(*ours_and_theirs(GradVac(eps=0.0), libmtl.GradVac, 2, beta=0.5))
    # LibMTL's CAGrad is hard-wired to 3 tasks and solves with SLSQP at its default tolerance
    close(*ours_and_theirs(CAGrad(0.4), libmtl.CAGrad, 3, calpha=0.4, rescale=1), 1e-4)


def test_mgda_with_three_tasks_agrees_with_libmtl_frank_wolfe_to_its_tolerance(libmtl):
    close(*ours_and_theirs(MGDA(), libmtl.MGDA, 3, mgda_gn="none"), 1e-3)


def test_gradnorm_libmtl_variant_matches_libmtl(libmtl):
    a, b = Net(2), Net(2)
    ours = GradNorm.libmtl(2, a.trunk.parameters(), alpha=1.5).double()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # its loss scales are created in the default dtype
    try:
        theirs = harness(libmtl.GradNorm, b)
    finally:
        torch.set_default_dtype(previous)
    epoch0 = [[v.item() for v in a.losses(s)] for s in (10, 11)]
    for s in (10, 11):  # epoch 0: plain sum on both sides
        ours(a.losses(s)).backward()
    ours.end_epoch()
    theirs.epoch = 1
    theirs.train_loss_buffer = torch.tensor(epoch0, dtype=F64).mean(0)[:, None]
    for step, s in enumerate((12, 13)):
        for net in (a, b, ours):
            net.zero_grad()
        with torch.no_grad():
            ours.task_weights.copy_(theirs.loss_scale)
        total = ours(a.losses(s))
        total.backward()
        previous = torch.get_default_dtype()
        torch.set_default_dtype(F64)
        try:
            theirs.loss_scale.grad = None
            w = theirs.backward(torch.stack(b.losses(s)), alpha=1.5)
        finally:
            torch.set_default_dtype(previous)
        close(ours.weights.double(), torch.as_tensor(w, dtype=F64))
        close(ours.task_weights.grad.double(), theirs.loss_scale.grad)
        close(trunk_grad(a), trunk_grad(b))
        with torch.no_grad():  # move the logits as an optimizer would, identically on both
            theirs.loss_scale.add_(torch.tensor([0.3, -0.2], dtype=F64) * (step + 1))
