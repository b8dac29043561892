"""Code run inside the spawned ranks of tests/test_distributed.py (gloo backend, CPU, loopback only).

Every rank builds the same global data from fixed seeds, so it can compute the single-process result
itself and compare its own share against it; a failed assertion propagates to the parent test.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as TF

from dist_harness import collective_calls
from losskit.distributed import (
    CrossRankLoss,
    all_gather_with_grad,
    gather_embeddings,
    vocab_parallel_cross_entropy,
)

F64 = torch.float64


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")


def check_all_gather(rank: int, world: int) -> None:
    sizes = [2 + r for r in range(world)]  # uneven batches
    blocks = [
        torch.randn(n, 3, generator=torch.Generator().manual_seed(r), dtype=F64)
        for r, n in enumerate(sizes)
    ]
    mine = blocks[rank].clone().requires_grad_(True)
    gathered = all_gather_with_grad(mine)
    _close(gathered, torch.cat(blocks), "gathered values")

    def global_loss(x):  # nonlinear and mixing rows, so every slice's gradient depends on the rest
        return (torch.tanh(x @ x.T) ** 2).sum()

    global_loss(gathered).backward()
    full = torch.cat(blocks).requires_grad_(True)
    global_loss(full).backward()
    start = sum(sizes[:rank])
    # Every rank computed the same loss: its slice receives the sum of the W identical gradients.
    _close(mine.grad, world * full.grad[start : start + sizes[rank]], "slice gradient")

    # The backward must not sum the ranks' gradients in the caller's upstream tensor.
    again = blocks[rank].clone().requires_grad_(True)
    gathered = all_gather_with_grad(again)
    upstream = torch.ones_like(gathered)
    gathered.backward(upstream)
    _close(upstream, torch.ones_like(upstream), "upstream gradient left untouched")


def check_vocab_parallel(rank: int, world: int) -> None:
    _check_vocab_parallel(rank, {2: [3, 8], 3: [2, 4, 5]}[world])  # uneven shards of V = 11
    _check_vocab_parallel(rank, {2: [0, 11], 3: [6, 0, 5]}[world])  # a rank with no column


def _check_vocab_parallel(rank: int, shard_sizes: list[int]) -> None:
    vocab = sum(shard_sizes)
    g = torch.Generator().manual_seed(123)
    logits = torch.randn(2, 3, vocab, generator=g, dtype=F64) * 3
    target = torch.randint(0, vocab, (2, 3), generator=g)
    target[0, 1] = -100
    start = sum(shard_sizes[:rank])
    for reduction in ("none", "mean", "sum"):
        for smoothing in (0.0, 0.2):
            local = logits[..., start : start + shard_sizes[rank]].clone().requires_grad_(True)
            full = logits.clone().requires_grad_(True)
            ours = vocab_parallel_cross_entropy(
                local, target, label_smoothing=smoothing, reduction=reduction
            )
            ref = TF.cross_entropy(
                full.permute(0, 2, 1), target, label_smoothing=smoothing, reduction=reduction
            )
            _close(ours, ref, f"value {reduction} eps={smoothing}")
            up = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
            ours.backward(up)
            ref.backward(up)
            _close(
                local.grad,
                full.grad[..., start : start + shard_sizes[rank]],
                f"grad {reduction} eps={smoothing}",
            )
    # Every target ignored: mean is NaN (0/0, as torch) and the gradient is zero, not NaN.
    local = logits[..., start : start + shard_sizes[rank]].clone().requires_grad_(True)
    ours = vocab_parallel_cross_entropy(local, torch.full((2, 3), -100))
    assert torch.isnan(ours), ours
    ours.backward()
    _close(local.grad, torch.zeros_like(local), "gradient with every target ignored")
    # The class-range check raises on every rank alike (the target is replicated).
    try:
        vocab_parallel_cross_entropy(
            logits[..., start : start + shard_sizes[rank]], torch.full((2, 3), vocab)
        )
    except IndexError as e:
        assert f"Target {vocab} is out of bounds" in str(e)
    else:
        raise AssertionError("out-of-range target did not raise")


def check_vocab_parallel_collectives(rank: int, world: int) -> None:
    """Forward: the shard sizes, the row max and one stacked sum; backward: no collective."""
    shard_sizes = {2: [3, 8], 3: [2, 4, 5]}[world]
    start = sum(shard_sizes[:rank])
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(4, sum(shard_sizes), generator=g, dtype=F64)
    target = torch.randint(0, sum(shard_sizes), (4,), generator=g)
    local = logits[:, start : start + shard_sizes[rank]].clone().requires_grad_(True)
    forward, backward = collective_calls(
        lambda: vocab_parallel_cross_entropy(local, target, label_smoothing=0.1)
    )
    assert forward == ["all_gather", "all_reduce", "all_reduce"], forward
    assert backward == [], backward


def _same_on_every_rank(t: torch.Tensor, what: str) -> None:
    copies = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, t.contiguous())
    for r, c in enumerate(copies):
        _close(c, t, f"{what}: rank {r} differs from rank {dist.get_rank()}")


def check_multitask_statistics(rank: int, world: int) -> None:
    from losskit.multitask import (
        DynamicTaskPrioritization,
        DynamicWeightAverage,
        GradNorm,
        UncertaintyWeighting,
    )

    # DTP: every rank sees different KPIs; all fold in their mean, like one process fed the means.
    kpis = [[0.5 + 0.1 * r, 0.9 - 0.2 * r] for r in range(world)]
    dtp, single = DynamicTaskPrioritization(2, alpha=0.5), DynamicTaskPrioritization(2, alpha=0.5)
    for step in range(3):
        dtp.update_kpis([k + 0.01 * step for k in kpis[rank]])
        # The twin gets the mean KPIs on every rank alike, so its own averaging changes nothing.
        single.update_kpis((torch.tensor(kpis, dtype=F64).mean(0) + 0.01 * step).tolist())
    _same_on_every_rank(dtp.weights.double(), "DTP weights")
    torch.testing.assert_close(dtp.weights, single.weights, rtol=1e-6, atol=0)

    # DWA: per-rank losses; the stored history is the mean over ranks.
    dwa = DynamicWeightAverage(2, period="step")
    for step in range(3):
        dwa(torch.tensor([1.0 + rank + step, 2.0 / (1 + rank + step)]))
    _same_on_every_rank(dwa.weights.double(), "DWA weights")

    # GradNorm: the initial losses (and so the loss rates) agree across ranks.
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 4)
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)])
    gn = GradNorm(2, shared.parameters())
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(rank))
    h = shared(x)
    gn([heads[0](h).pow(2).mean(), (heads[1](h) - 1 - rank).pow(2).mean()])
    _same_on_every_rank(gn.initial_losses.double(), "GradNorm initial losses")

    # Learned weights inside the DDP-wrapped module are kept equal by DDP's gradient averaging.
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(3, 2)
            self.weighting = UncertaintyWeighting(["regression", "regression"])

        def forward(self, x):
            out = self.net(x)
            return self.weighting([out[:, 0].pow(2).mean(), (out[:, 1] - 3).pow(2).mean()])

    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(Model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        x = torch.randn(5, 3, generator=torch.Generator().manual_seed(100 * rank + step))
        opt.zero_grad()
        model(x).backward()
        opt.step()
    _same_on_every_rank(model.module.weighting.log_vars.detach().double(), "learned log-variances")


def _metric_losses():
    import losskit.nn
    from losskit.metric import contrastive_loss, multi_similarity_loss, triplet_loss

    return {
        "triplet batch_hard": lambda e, y: triplet_loss(e, y, margin=0.3, mining="batch_hard"),
        "triplet batch_all": lambda e, y: triplet_loss(e, y, margin=0.3, mining="batch_all"),
        "triplet semi_hard cosine": lambda e, y: triplet_loss(
            e, y, margin=0.3, mining="semi_hard", metric="cosine"
        ),
        "triplet soft margin sum": lambda e, y: triplet_loss(
            e, y, soft_margin=True, reduction="sum"
        ),
        "contrastive": lambda e, y: contrastive_loss(e, y, pos_margin=0.1, neg_margin=1.5),
        "multi-similarity": lambda e, y: multi_similarity_loss(e, y),
        "TripletLoss module": losskit.nn.TripletLoss(margin=0.3),
    }


def check_cross_rank_metric_learning(rank: int, world: int) -> None:
    """Mining over the global batch: each rank's loss is the single-process loss on the
    concatenated batch, and after DDP's averaging each rank holds the single-process gradients."""
    sizes = [5 + 2 * r for r in range(world)]  # uneven batches
    g = torch.Generator().manual_seed(11)
    x_all = torch.randn(sum(sizes), 6, generator=g, dtype=F64)
    y_all = torch.randint(0, 4, (sum(sizes),), generator=g)
    start = sum(sizes[:rank])
    x, y = x_all[start : start + sizes[rank]], y_all[start : start + sizes[rank]]

    torch.manual_seed(0)
    single = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    single = single.double()
    model = torch.nn.parallel.DistributedDataParallel(copy_module(single))
    for name, loss_fn in _metric_losses().items():
        single.zero_grad()
        model.zero_grad()
        expected = loss_fn(single(x_all), y_all)
        expected.backward()
        if isinstance(loss_fn, torch.nn.Module):
            got = CrossRankLoss(loss_fn)(model(x), y)
        else:
            got = loss_fn(*gather_embeddings(model(x), y))
        got.backward()
        _close(got, expected, f"{name}: loss")
        for (pname, p), q in zip(model.module.named_parameters(), single.parameters(), strict=True):
            _close(p.grad, q.grad, f"{name}: gradient of {pname}")


def copy_module(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


CHECKS = [
    check_all_gather,
    check_vocab_parallel,
    check_vocab_parallel_collectives,
    check_multitask_statistics,
    check_cross_rank_metric_learning,
]
