"""Aggregators under DDP (2 gloo ranks, one spawn) and under a CPU GradScaler with autocast."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from dist_harness import run_ranks
from losskit.multitask.aggregators import MGDA, NashMTL


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_every_rank_aggregates_the_same_thing_under_ddp(tmp_path):
    import _dist_multitask_workers

    run_ranks(_dist_multitask_workers.CHECKS, 2, tmp_path)


def _model():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))
    heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
    return trunk, heads


def _step(aggregator, scaler=None, scale_losses=1.0):
    trunk, heads = _model()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 2, generator=g) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = trunk(x)
        losses = [((heads[t](h).squeeze(1).float() - y[:, t]) ** 2).mean() for t in range(2)]
    aggregator.backward([v * scale_losses for v in losses], trunk.parameters(), grad_scaler=scaler)
    return trunk, heads


@pytest.mark.parametrize("make", [lambda: NashMTL(max_norm=1.0), lambda: MGDA()])
def test_grad_scaler_scale_is_undone_before_aggregation(make):
    # NashMTL with a binding max_norm is not scale-invariant: aggregating the scaled gradients
    # would clip S times too hard. After scaler.unscale_ the gradients equal the unscaled run.
    plain_trunk, plain_heads = _step(make())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    trunk, heads = _step(make(), scaler)
    opt = torch.optim.SGD([*trunk.parameters(), *heads.parameters()], lr=0.1)
    scaler.unscale_(opt)
    for p, q in zip(
        [*trunk.parameters(), *heads.parameters()],
        [*plain_trunk.parameters(), *plain_heads.parameters()],
        strict=True,
    ):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    # the naive way (scaled losses, no scaler given) clips S times too hard with NashMTL
    naive_trunk, _ = _step(make(), scale_losses=2.0**12)
    ratio = naive_trunk[0].weight.grad.norm() / (2.0**12 * plain_trunk[0].weight.grad.norm())
    if isinstance(make(), NashMTL):
        assert ratio < 0.5
    else:
        assert ratio == pytest.approx(1.0, rel=1e-4)


def test_an_overflowing_step_is_skipped_and_the_scale_lowered():
    scaler = torch.amp.GradScaler("cpu", init_scale=1e38)
    trunk, heads = _step(MGDA(), scaler)
    params = [*trunk.parameters(), *heads.parameters()]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.1)
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert scaler.get_scale() < 1e38
