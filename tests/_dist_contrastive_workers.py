"""Code run inside the spawned ranks of tests/test_contrastive_dist.py (gloo, CPU, loopback only).

Every rank builds the same global batch from fixed seeds and computes the single-process loss
on it itself, through a process group holding only this rank (the single-process path of every
loss); it then checks its own distributed result against it (losskit.distributed's convention):

* the value on every rank is the single-process value;
* the gradient of this rank's rows is ``W`` times their single-process gradient (every rank's
  loss is the same global loss), so DDP's average gives the single-process parameter gradient;
* the gradient of a replicated parameter (logit scale, bias), averaged over ranks as DDP does,
  is the single-process one.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist

from dist_harness import collective_calls
from losskit.contrastive import clip_loss, info_nce_loss, siglip_loss, supcon_loss

F64 = torch.float64
SIZES = {2: [3, 5], 3: [2, 4, 3]}  # uneven local batches
_STATE: dict = {}


def _close(a, b, what, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _rows(world: int, rank: int) -> slice:
    sizes = SIZES[world]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale


def check_setup(rank: int, world: int) -> None:
    # Every rank must create every group, in the same order.
    groups = [dist.new_group([r]) for r in range(world)]
    _STATE["single"] = groups[rank]


def _compare(what, fn, diff, replicated, fixed, rank, world, reductions=("mean", "sum", "none")):
    """``fn(diff_tensors, replicated, fixed_tensors, group, reduction)`` on this rank's rows
    against the single-process call on the global batch."""
    rows = _rows(world, rank)
    for reduction in reductions:
        local = [t[rows].clone().requires_grad_(True) for t in diff]
        full = [t.clone().requires_grad_(True) for t in diff]
        rep_d = [p.clone().requires_grad_(True) for p in replicated]
        rep_s = [p.clone().requires_grad_(True) for p in replicated]
        got = fn(local, rep_d, [t[rows] for t in fixed], None, reduction)
        want = fn(full, rep_s, fixed, _STATE["single"], reduction)
        _close(got, want, f"{what} {reduction}: value")
        up = _randn(99, *want.shape)
        got.backward(up)
        want.backward(up)
        for k, (a, b) in enumerate(zip(local, full, strict=True)):
            _close(a.grad, world * b.grad[rows], f"{what} {reduction}: gradient of input {k}")
        for k, (a, b) in enumerate(zip(rep_d, rep_s, strict=True)):
            mean = a.grad.clone()
            dist.all_reduce(mean)
            _close(mean / world, b.grad, f"{what} {reduction}: DDP-averaged gradient of param {k}")


def _pairs(world, seed, d=4, scale=1.0):
    n = sum(SIZES[world])
    return [_randn(seed, n, d, scale=scale), _randn(seed + 1, n, d, scale=scale)]


def check_clip(rank: int, world: int) -> None:
    scale, bias = torch.tensor(3.0, dtype=F64), torch.tensor(-0.4, dtype=F64)
    for local_loss in (True, False):
        for chunk in (None, 2):
            _compare(
                f"clip local_loss={local_loss} chunk={chunk}",
                lambda x, p, f, g, r, ll=local_loss, c=chunk: clip_loss(
                    x[0], x[1], p[0], local_loss=ll, group=g, chunk_size=c, reduction=r
                ),
                _pairs(world, 1),
                [scale],
                [],
                rank,
                world,
            )
    _compare(
        "clip with a bias",
        lambda x, p, f, g, r: clip_loss(x[0], x[1], p[0], logit_bias=p[1], group=g, reduction=r),
        _pairs(world, 3),
        [scale, bias],
        [],
        rank,
        world,
        ("mean",),
    )


def check_clip_without_gradient_gather(rank: int, world: int) -> None:
    """open_clip's gather_with_grad=False: other ranks' features are constants."""
    img, txt = _pairs(world, 5)
    rows = _rows(world, rank)
    s = torch.tensor(2.0, dtype=F64)
    for local_loss in (True, False):
        a, b = img[rows].clone().requires_grad_(True), txt[rows].clone().requires_grad_(True)
        got = clip_loss(a, b, s, local_loss=local_loss, gather_with_grad=False)
        a2, b2 = img[rows].clone().requires_grad_(True), txt[rows].clone().requires_grad_(True)
        if local_loss:  # open_clip's formula: local rows against constant gathered columns
            target = torch.arange(rows.start, rows.stop)
            want = 0.5 * (
                torch.nn.functional.cross_entropy(s * a2 @ txt.T, target)
                + torch.nn.functional.cross_entropy(s * b2 @ img.T, target)
            )
        else:  # the single-process loss, only this rank's slices with gradient
            all_a = torch.cat([img[: rows.start], a2, img[rows.stop :]])
            all_b = torch.cat([txt[: rows.start], b2, txt[rows.stop :]])
            want = clip_loss(all_a, all_b, s, group=_STATE["single"])
        _close(got, want, f"no-grad gather local_loss={local_loss}: value")
        got.backward()
        want.backward()
        _close(a.grad, a2.grad, f"no-grad gather local_loss={local_loss}: image gradient")
        _close(b.grad, b2.grad, f"no-grad gather local_loss={local_loss}: text gradient")


def check_siglip(rank: int, world: int) -> None:
    scale, bias = torch.tensor(4.0, dtype=F64), torch.tensor(-2.0, dtype=F64)
    for mode in ("all_gather", "neighbour_exchange"):
        for chunk in (None, 3):
            _compare(
                f"siglip {mode} chunk={chunk}",
                lambda x, p, f, g, r, m=mode, c=chunk: siglip_loss(
                    x[0], x[1], p[0], p[1], distributed=m, group=g, chunk_size=c, reduction=r
                ),
                _pairs(world, 7),
                [scale, bias],
                [],
                rank,
                world,
            )


def check_info_nce(rank: int, world: int) -> None:
    n = sum(SIZES[world])
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(4))
    cases = {
        "plain": ({}, []),
        "symmetric + labels": ({"symmetric": True}, [labels]),
        "labels, dot products": ({"normalize": False, "temperature": 2.0}, [labels]),
        "chunked": ({"chunk_size": 2}, []),
        "chunked, symmetric": ({"chunk_size": 3, "symmetric": True}, []),
        "labels, chunked": ({"chunk_size": 2}, [labels]),
        "symmetric + labels, chunked": ({"symmetric": True, "chunk_size": 3}, [labels]),
    }
    for name, (kwargs, fixed) in cases.items():
        _compare(
            f"info_nce {name}",
            lambda x, p, f, g, r, kw=kwargs: info_nce_loss(
                x[0], x[1], labels=f[0] if f else None, group=g, reduction=r, **kw
            ),
            _pairs(world, 11),
            [],
            fixed,
            rank,
            world,
        )
    for chunk, fixed in ((None, []), (2, []), (2, [labels])):
        _compare(
            f"info_nce per-query negatives chunk={chunk} labels={bool(fixed)}",
            lambda x, p, f, g, r, c=chunk: info_nce_loss(
                x[0],
                x[1],
                negatives=x[2],
                labels=f[0] if f else None,
                temperature=0.3,
                group=g,
                chunk_size=c,
                reduction=r,
            ),
            [*_pairs(world, 13), _randn(15, n, 3, 4)],
            [],
            fixed,
            rank,
            world,
        )
    # A shared bank: every rank contributes its own rows (uneven: 1, 3[, 0]).
    bank_sizes = [1, 3, 0][:world]
    bank = _randn(17, sum(bank_sizes), 4)
    mine = slice(sum(bank_sizes[:rank]), sum(bank_sizes[: rank + 1]))
    rows = _rows(world, rank)
    q, k = _pairs(world, 19)
    for chunk, y in ((None, None), (2, None), (3, labels)):
        lq, lk, lb = (t.clone().requires_grad_(True) for t in (q[rows], k[rows], bank[mine]))
        fq, fk, fb = (t.clone().requires_grad_(True) for t in (q, k, bank))
        kw = {"symmetric": True, "temperature": 0.2, "chunk_size": chunk}
        ly = None if y is None else y[rows]
        got = info_nce_loss(lq, lk, negatives=lb, labels=ly, **kw)
        want = info_nce_loss(fq, fk, negatives=fb, labels=y, group=_STATE["single"], **kw)
        what = f"info_nce shared bank chunk={chunk} labels={y is not None}"
        _close(got, want, f"{what}: value")
        got.backward()
        want.backward()
        _close(lq.grad, world * fq.grad[rows], f"{what}: query gradient")
        _close(lb.grad, world * fb.grad[mine], f"{what}: bank gradient")


def check_supcon(rank: int, world: int) -> None:
    n = sum(SIZES[world])
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(21))
    cases = [(m, y, None) for m in ("all", "one") for y in (True, False)]
    cases += [("all", True, 2), ("one", False, 3), ("one", True, 1)]  # block by block
    for mode, with_labels, chunk in cases:
        _compare(
            f"supcon {mode} labels={with_labels} chunk={chunk}",
            lambda x, p, f, g, r, m=mode, c=chunk: supcon_loss(
                x[0], f[0] if f else None, contrast_mode=m, group=g, chunk_size=c, reduction=r
            ),
            [_randn(23, n, 2, 4)],
            [],
            [labels] if with_labels else [],
            rank,
            world,
        )


def _open_clip_loss():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None  # the optional peer is not installed
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def check_open_clip_across_ranks(rank: int, world: int) -> None:
    """With equal local batches (open_clip's assumption) open_clip's per-rank losses sum to W
    times losskit's global loss and give every rank the same feature gradients."""
    oc = _open_clip_loss()
    if oc is None:
        return
    n = 4
    img, txt = _randn(27, world * n, 4), _randn(28, world * n, 4)
    mine = slice(rank * n, (rank + 1) * n)
    s, b = torch.tensor(3.0, dtype=F64), torch.tensor(-1.0, dtype=F64)
    peers = {
        "ClipLoss": (
            oc.ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world),
            lambda x, y: clip_loss(x, y, s),
            (s,),
        ),
        "SigLipLoss bidir": (
            oc.SigLipLoss(rank=rank, world_size=world, dist_impl="bidir"),
            lambda x, y: siglip_loss(x, y, s, b, distributed="neighbour_exchange"),
            (s, b),
        ),
    }
    for name, (peer, ours, extra) in peers.items():
        a1, t1 = img[mine].clone().requires_grad_(True), txt[mine].clone().requires_grad_(True)
        a2, t2 = img[mine].clone().requires_grad_(True), txt[mine].clone().requires_grad_(True)
        theirs = peer(a1, t1, *extra)
        got = ours(a2, t2)
        total = theirs.detach().clone()
        dist.all_reduce(total)
        _close(got, total / world, f"open_clip {name}: value")
        theirs.backward()
        got.backward()
        _close(a2.grad, a1.grad, f"open_clip {name}: image gradient")
        _close(t2.grad, t1.grad, f"open_clip {name}: text gradient")


@contextlib.contextmanager
def _count_p2p(calls: list):
    real = {name: getattr(dist, name) for name in ("isend", "irecv")}

    def counting(name):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real[name](*args, **kwargs)

        return wrapper

    try:
        for name in real:
            setattr(dist, name, counting(name))
        yield
    finally:
        for name, fn in real.items():
            setattr(dist, name, fn)


def check_collectives(rank: int, world: int) -> None:
    """CLIP: the batch sizes, one gather of both features stacked, the loss value; backward: one
    all-reduce of the gathered gradient. SigLIP's neighbour exchange: W - 1 shifts each way."""
    rows = _rows(world, rank)
    img, txt = (t[rows].clone().requires_grad_(True) for t in _pairs(world, 25))
    s = torch.tensor(2.0, dtype=F64, requires_grad=True)
    forward, backward = collective_calls(lambda: clip_loss(img, txt, s))
    assert forward == ["all_gather", "all_gather", "all_reduce"], forward
    assert backward == ["all_reduce"], backward
    forward, backward = collective_calls(lambda: clip_loss(img, txt, s, chunk_size=2))
    assert (forward, backward) == (["all_gather", "all_gather", "all_reduce"], ["all_reduce"])
    forward, backward = collective_calls(lambda: clip_loss(img, txt, s, local_loss=False))
    assert (forward, backward) == (["all_gather", "all_gather"], ["all_reduce"]), forward
    p2p: list = []
    with _count_p2p(p2p):
        forward, backward = collective_calls(
            lambda: siglip_loss(img, txt, s, -1.0, distributed="neighbour_exchange")
        )
    assert forward == ["all_gather", "all_reduce"] and backward == [], (forward, backward)
    assert p2p == ["isend", "irecv"] * (2 * (world - 1)), p2p


# The README's two-rank CLIP recipe, run as written (the harness has already joined the group).
CLIP_RECIPE = """\
# torchrun --nproc_per_node=2 train_clip.py
import torch, torch.distributed as dist
import losskit

dist.init_process_group("gloo")                 # "nccl" on GPUs
rank = dist.get_rank()
torch.manual_seed(0)                            # the same initial weights on every rank

class TwoTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.image = torch.nn.Linear(32, 16)    # your image encoder
        self.text = torch.nn.Linear(24, 16)     # your text encoder
        self.loss = losskit.contrastive.ClipLoss(chunk_size=32)  # learnable scale, capped at 100

    def forward(self, images, texts):
        img = torch.nn.functional.normalize(self.image(images), dim=-1)
        txt = torch.nn.functional.normalize(self.text(texts), dim=-1)
        return self.loss(img, txt)              # the global-batch loss, the same on every rank

model = torch.nn.parallel.DistributedDataParallel(TwoTower())
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
data = torch.Generator().manual_seed(1 + rank)  # each rank its own shard (random pairs here)
for step in range(3):
    images, texts = torch.randn(64, 32, generator=data), torch.randn(64, 24, generator=data)
    loss = model(images, texts)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    if rank == 0:
        print(f"step {step}: loss {loss.item():.4f}, scale {model.module.loss.logit_scale.exp().item():.2f}")
dist.destroy_process_group()
"""


def check_clip_recipe(rank: int, world: int) -> None:
    """The recipe trains to the same weights as one process on the concatenated batches."""
    scope: dict = {}
    real = dist.init_process_group, dist.destroy_process_group
    dist.init_process_group = dist.destroy_process_group = lambda *a, **k: None
    try:
        exec(CLIP_RECIPE, scope)
    finally:
        dist.init_process_group, dist.destroy_process_group = real
    torch.manual_seed(0)
    single = scope["TwoTower"]()
    single.loss.group = _STATE["single"]
    optimizer = torch.optim.AdamW(single.parameters(), lr=1e-3)
    shards = [torch.Generator().manual_seed(1 + r) for r in range(world)]
    for _ in range(3):
        batches = [
            (torch.randn(64, 32, generator=g), torch.randn(64, 24, generator=g)) for g in shards
        ]
        loss = single(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = dict(scope["model"].module.named_parameters())
    for name, p in single.named_parameters():
        _close(trained[name], p, f"recipe: parameter {name} after 3 steps", rtol=1e-4, atol=1e-6)


CHECKS = [
    check_setup,
    check_clip,
    check_clip_without_gradient_gather,
    check_siglip,
    check_info_nce,
    check_supcon,
    check_collectives,
    check_open_clip_across_ranks,
    check_clip_recipe,
]
