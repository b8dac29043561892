"""CUDA correctness checks and launch-configuration sweeps for the kernels (run on a GPU).

    python benchmarks/gpu_check.py [--tune] [--out DIR]

Every kernel is compared with the PyTorch path (``use_kernels("never")``) on fresh random inputs;
the relative error ||ours - ref|| / ||ref|| of the loss and of each gradient is printed.
"""

from __future__ import annotations

import argparse
import statistics
import traceback

import torch

import losskit
from losskit import distillation as D
from losskit import linear as L
from losskit.kernels import use_kernels
from losskit.metric import batch_hard_triplets

DEV = "cuda"
ROWS: list[str] = []


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(b).all() or not torch.isfinite(a).all():
        return float("nan") if not torch.equal(a.isnan(), b.isnan()) else 0.0
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def compare(name: str, fn, make, tol: float) -> None:
    """fn(inputs) -> loss through the public API, kernels forced then forbidden; compare loss and grads of the inputs with grad."""
    try:
        g = torch.Generator(device=DEV).manual_seed(0)
        ins = make(g)
        outs = {}
        for mode in ("always", "never"):
            leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in ins]
            with use_kernels(mode):
                out = fn(*leaves)
            up = torch.randn(
                out.shape, device=DEV, generator=torch.Generator(device=DEV).manual_seed(1)
            ).to(out.dtype)
            gr = torch.autograd.grad(out, [t for t in leaves if t.requires_grad], up)
            outs[mode] = (out, gr)
        errs = [rel(outs["always"][0], outs["never"][0])]
        errs += [rel(a, b) for a, b in zip(outs["always"][1], outs["never"][1], strict=True)]
        ok = all(e <= tol for e in errs)
        ROWS.append(f"{'ok  ' if ok else 'FAIL'} {name:58s} " + " ".join(f"{e:.1e}" for e in errs))
    except Exception as e:
        ROWS.append(f"ERR  {name}: {type(e).__name__}: {e}")
        traceback.print_exc()


def randn(g, *shape, dtype=torch.float32, scale=1.0, grad=False):
    return (torch.randn(*shape, device=DEV, generator=g) * scale).to(dtype).requires_grad_(grad)


def targets(g, n, c, frac=0.1):
    t = torch.randint(0, c, (n,), device=DEV, generator=g)
    t[torch.rand(n, device=DEV, generator=g) < frac] = -100
    return t


def checks(quick: bool = False) -> None:
    bf, f32 = torch.bfloat16, torch.float32
    for c in (1000, 128256) if quick else (1000, 32000, 128256):
        for dt, tol in ((f32, 1e-5), (bf, 1e-2)):
            for red in ("mean", "sum", "none"):
                compare(
                    f"ce C={c} {dt} {red}",
                    lambda x, t, w, red=red: losskit.cross_entropy(x, t, w, -100, red, 0.1),
                    lambda g, c=c, dt=dt: (
                        randn(g, 64, c, dtype=dt, scale=3, grad=True),
                        targets(g, 64, c),
                        torch.rand(c, device=DEV, generator=g) + 0.5,
                    ),
                    tol,
                )
        compare(
            f"ce z-loss+softcap C={c} bf16",
            lambda x, t: L.cross_entropy_with_z_loss(x, t, lse_square_scale=1e-4, softcap=30.0),
            lambda g, c=c: (randn(g, 64, c, dtype=bf, scale=10, grad=True), targets(g, 64, c)),
            1e-2,
        )
    compare(
        "ce K-dim (8, 21, 32, 32) f32",
        lambda x, t: losskit.cross_entropy(x, t),
        lambda g: (
            randn(g, 8, 21, 32, 32, grad=True),
            torch.randint(0, 21, (8, 32, 32), device=DEV, generator=g),
        ),
        1e-5,
    )
    for red in ("mean", "none"):
        compare(
            f"bce pos_weight (4096, 80) {red}",
            lambda x, y, pw, red=red: losskit.binary_cross_entropy_with_logits(x, y, None, red, pw),
            lambda g: (
                randn(g, 4096, 80, scale=3, grad=True),
                (torch.rand(4096, 80, device=DEV, generator=g) < 0.1).float(),
                torch.rand(80, device=DEV, generator=g) * 3,
            ),
            1e-5,
        )
        for gamma in (2.0, 0.5):
            compare(
                f"focal gamma={gamma} (4096, 80) {red}",
                lambda x, y, red=red, gamma=gamma: losskit.sigmoid_focal_loss(
                    x, y, 0.25, gamma, red
                ),
                lambda g: (
                    randn(g, 4096, 80, scale=3, grad=True),
                    torch.rand(4096, 80, device=DEV, generator=g),
                ),
                1e-5,
            )
        compare(
            f"kl_div (512, 1000) {red}",
            lambda x, t, red=red: losskit.kl_div(x, t, red),
            lambda g: (
                randn(g, 512, 1000, grad=True).log_softmax(1).detach().requires_grad_(),
                randn(g, 512, 1000).softmax(1),
            ),
            1e-5,
        )
    for v in (32000,) if quick else (32000, 100000):
        for dt, tol in ((f32, 1e-5), (bf, 1e-2)):
            for red in ("batchmean", "none"):
                compare(
                    f"distill KL V={v} {dt} {red}",
                    lambda s, t, red=red: D.distillation_kl_div(s, t, 2.0, red),
                    lambda g, v=v, dt=dt: (
                        randn(g, 128, v, dtype=dt, scale=3, grad=True),
                        randn(g, 128, v, dtype=dt, scale=3),
                    ),
                    tol,
                )
                compare(
                    f"jsd V={v} {dt} {red}",
                    lambda s, t, red=red: D.jsd(s, t, 0.3, 2.0, red),
                    lambda g, v=v, dt=dt: (
                        randn(g, 128, v, dtype=dt, scale=3, grad=True),
                        randn(g, 128, v, dtype=dt, scale=3),
                    ),
                    tol,
                )
    for red in ("mean", "none"):
        compare(
            f"linear_ce (1000, 512) x (32000, 512) bf16 {red}",
            lambda x, w, t, red=red: L.linear_cross_entropy(x, w, t, reduction=red, chunk_size=300),
            lambda g: (
                randn(g, 1000, 512, dtype=bf, scale=0.05, grad=True),
                randn(g, 32000, 512, dtype=bf, grad=True),
                targets(g, 1000, 32000),
            ),
            2e-2,
        )
    try:
        g = torch.Generator(device=DEV).manual_seed(3)
        x = torch.randn(1000, 128, device=DEV, generator=g)
        labels = torch.randint(0, 100, (1000,), device=DEV, generator=g)
        with use_kernels("always"):
            _, p1, n1 = batch_hard_triplets(x, labels)
        with use_kernels("never"):
            _, p2, n2 = batch_hard_triplets(x.double(), labels)
        ROWS.append(
            f"{'ok  ' if torch.equal(p1, p2) and torch.equal(n1, n2) else 'FAIL'} batch-hard mining B=1000 D=128 equal indices: {int((p1 == p2).sum())}/{int((n1 == n2).sum())}"
        )
    except Exception as e:
        ROWS.append(f"ERR  triplet: {e}")
        traceback.print_exc()


def time_ms(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        ts.append((a, b))
    torch.cuda.synchronize()
    return statistics.median(x.elapsed_time(y) for x, y in ts)


def tune() -> None:
    from losskit.kernels.cross_entropy import function as ce
    from losskit.kernels.kl import function as kl
    from losskit.kernels.triplet import function as tri

    tuned = []
    g = torch.Generator(device=DEV).manual_seed(0)
    sets = [
        (randn(g, 8192, 128256, dtype=torch.bfloat16, grad=True), targets(g, 8192, 128256))
        for _ in range(2)
    ]
    k = [0]

    def step():
        x, t = sets[k[0] % 2]
        k[0] += 1
        x.grad = None
        with use_kernels("always"):
            losskit.cross_entropy(x, t).backward()

    best = None
    for block, warps, per_sm in (
        (8192, 16, 1),
        (16384, 32, 1),
        (32768, 32, 1),
        (8192, 16, 2),
        (16384, 16, 2),
        (32768, 32, 2),
    ):
        ce.MULTI_BLOCK, ce.MULTI_WARPS, ce.PROGRAMS_PER_SM = block, warps, per_sm
        ms = time_ms(step)
        ROWS.append(
            f"tune CE bf16 8192x128256 block={block} warps={warps} programs/SM={per_sm}: {ms:.3f} ms"
        )
        best = min(best or (ms, block, warps, per_sm), (ms, block, warps, per_sm))
    tuned.append(f"ce.MULTI_BLOCK, ce.MULTI_WARPS, ce.PROGRAMS_PER_SM = {best[1:]}")
    exec(tuned[-1])
    sets.clear()
    kd = [
        (
            randn(g, 8192, 32000, dtype=torch.bfloat16, grad=True),
            randn(g, 8192, 32000, dtype=torch.bfloat16),
        )
        for _ in range(2)
    ]

    def kstep():
        s, t = kd[k[0] % 2]
        k[0] += 1
        s.grad = None
        with use_kernels("always"):
            D.distillation_kl_div(s, t).backward()

    best = None
    for single, block, warps in (
        (16384, 8192, 16),
        (32768, 4096, 8),
        (16384, 16384, 32),
        (16384, 4096, 4),
    ):
        kl.MAX_SINGLE_BLOCK, kl.MULTI_BLOCK, kl.MULTI_WARPS = single, block, warps
        ms = time_ms(kstep)
        ROWS.append(
            f"tune KD bf16 8192x32000 single<={single} block={block} warps={warps}: {ms:.3f} ms"
        )
        best = min(best or (ms, single, block, warps), (ms, single, block, warps))
    tuned.append(f"kl.MAX_SINGLE_BLOCK, kl.MULTI_BLOCK, kl.MULTI_WARPS = {best[1:]}")
    exec(tuned[-1])
    kd.clear()
    x = randn(g, 4096, 512, grad=True)
    labels = torch.arange(4096, device=DEV) % 512
    with use_kernels("never"):
        ref = batch_hard_triplets(x.detach().double(), labels)[1:]
    best = None
    for bm, bn, bd, prec, warps in (
        (32, 128, 32, "ieee", 4),
        (64, 128, 32, "tf32x3", 4),
        (64, 64, 32, "tf32x3", 4),
        (128, 64, 32, "tf32x3", 8),
        (64, 128, 32, "tf32x3", 8),
        (32, 128, 32, "tf32x3", 4),
    ):
        tri.BLOCK_M, tri.BLOCK_N, tri.BLOCK_D, tri.PRECISION, tri.NUM_WARPS = (
            bm,
            bn,
            bd,
            prec,
            warps,
        )
        with use_kernels("always"):
            try:
                got = batch_hard_triplets(x, labels)[1:]
                same = int((got[0] == ref[0]).sum() + (got[1] == ref[1]).sum())
                ms = time_ms(lambda: batch_hard_triplets(x, labels))
            except Exception as e:
                ROWS.append(f"tune mining {bm}x{bn}x{bd} {prec}: {type(e).__name__} {e}")
                continue
        ROWS.append(
            f"tune mining B=4096 D=512 tiles {bm}x{bn}x{bd} {prec} warps={warps}: {ms:.3f} ms, {same}/8192 indices equal to float64"
        )
        if same == 2 * 4096:
            best = min(best or (ms, bm, bn, bd, prec, warps), (ms, bm, bn, bd, prec, warps))
    if best:
        tuned.append(
            f"tri.BLOCK_M, tri.BLOCK_N, tri.BLOCK_D, tri.PRECISION, tri.NUM_WARPS = {best[1:]}"
        )
    with open("/tmp/tuned.py", "w") as f:
        f.write("from losskit.kernels.cross_entropy import function as ce\n")
        f.write("from losskit.kernels.kl import function as kl\n")
        f.write("from losskit.kernels.triplet import function as tri\n")
        f.write("\n".join(tuned) + "\n")
    ROWS.extend("tuned: " + t for t in tuned)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    if not args.skip_checks:
        checks(args.quick)
    if args.tune:
        tune()
    print("\n".join(ROWS))
