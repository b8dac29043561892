"""Code run inside the 2 spawned gloo ranks of tests/test_multitask_aggregators_dist.py.

Every rank builds the same global batch from fixed seeds and trains on its own half under DDP; it
computes the single-process answers itself and compares.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn

from losskit.multitask.aggregators import MGDA, PCGrad, UPGrad

F64 = torch.float64
T = 3


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(5, 1) for _ in range(T))

    def forward(self, x):
        h = self.trunk(x)
        return h, [head(h).squeeze(1) for head in self.heads]


def losses_of(outputs, ys):
    return [
        (t + 1.0) * ((o - y) ** 2).mean() for t, (o, y) in enumerate(zip(outputs, ys, strict=True))
    ]


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{what}: {m}")


def _same_on_every_rank(t, what):
    copies = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, t.contiguous())
    for r, c in enumerate(copies):
        _close(c, t, f"{what}: rank {r} differs from rank {dist.get_rank()}")


def _grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def check_aggregators_under_ddp(rank: int, world: int) -> None:
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(8 * world, 4, generator=g, dtype=F64)
    ys_all = [torch.randn(8 * world, generator=g, dtype=F64) for _ in range(T)]
    part = slice(8 * rank, 8 * (rank + 1))
    torch.manual_seed(0)
    single = Net().double()
    model = nn.parallel.DistributedDataParallel(copy.deepcopy(single))

    # sync="gradients": per-task gradients are averaged, so the result is the single-process one
    # on the concatenated batch, for every rank.
    for make in (
        lambda: UPGrad(sync="gradients"),
        lambda: MGDA(sync="gradients", max_gradients=None),
        lambda: PCGrad(sync="gradients", generator=torch.Generator().manual_seed(1)),
    ):
        single.zero_grad()
        model.zero_grad()
        _, out = single(x_all)
        expected_w = make().backward(losses_of(out, ys_all), single.trunk.parameters())
        h, out = model(x_all[part])
        w = make().backward(
            losses_of(out, [y[part] for y in ys_all]), model.module.trunk.parameters()
        )
        name = type(make()).__name__
        _close(w, expected_w, f"{name} weights (sync=gradients)")
        _close(_grads(model.module), _grads(single), f"{name} gradients (sync=gradients)")

    # sync="gramian" (default): the local Gramians are averaged, every rank gets the same weights
    # and DDP averages Σ w_t ∇L_t: check against those weights applied to the global gradients.
    model.zero_grad()
    h, out = model(x_all[part])
    local = losses_of(out, [y[part] for y in ys_all])
    shared = list(model.module.trunk.parameters())
    J = torch.stack(
        [
            torch.cat([q.reshape(-1) for q in torch.autograd.grad(v, shared, retain_graph=True)])
            for v in local
        ]
    )
    G = J @ J.T
    dist.all_reduce(G)
    w_expected = UPGrad().weights(G / world)
    w = UPGrad().backward(local, shared)
    _close(w, w_expected, "UPGrad weights (sync=gramian)")
    _same_on_every_rank(_grads(model.module), "gradients (sync=gramian)")
    Jg = J.clone()
    dist.all_reduce(Jg)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    _close(got, w @ (Jg / world), "trunk gradient (sync=gramian)")

    # shared representation (MGDA-UB): same weights and gradients on every rank
    model.zero_grad()
    h, out = model(x_all[part])
    w = MGDA().backward(losses_of(out, [y[part] for y in ys_all]), None, shared_representation=h)
    _same_on_every_rank(w, "MGDA-UB weights")
    _same_on_every_rank(_grads(model.module), "MGDA-UB gradients")


CHECKS = [check_aggregators_under_ddp]
