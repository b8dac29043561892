"""On a CUDA machine: the public functionals pick the fused kernels in the default "auto" mode and
agree with the PyTorch path (value and gradient). Run: ``PYTHONPATH=src python benchmarks/gpu_wiring_check.py``."""

from __future__ import annotations

import torch

import losskit
from losskit.kernels import get_kernel_mode, use_kernels


def graph_names(out: torch.Tensor) -> set[str]:
    names, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(n for n, _ in node.next_functions)
    return names


def compare(name, fn, x, expect_fn):
    a = x.detach().clone().requires_grad_(True)
    out = fn(a)
    out.backward(torch.ones_like(out))
    b = x.detach().clone().requires_grad_(True)
    with use_kernels("never"):
        ref = fn(b)
        ref.backward(torch.ones_like(ref))
    names = graph_names(out)
    used = any(expect_fn in n for n in names) if expect_fn else True
    dv = (out.double() - ref.double()).abs().max().item()
    dg = (a.grad.double() - b.grad.double()).abs().max().item()
    ok = used and dv < 1e-3 and dg < 1e-4
    print(
        f"{'OK ' if ok else 'BAD'} {name:<34} kernel used={used} max|dvalue|={dv:.2e} max|dgrad|={dg:.2e}"
    )
    return ok


def main() -> int:
    assert torch.cuda.is_available(), "needs a CUDA device"
    print("mode:", get_kernel_mode(), "torch", torch.__version__)
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(512, 1000, device=dev, generator=g)
    t = torch.randint(0, 1000, (512,), device=dev, generator=g)
    t[::7] = -100
    y = (torch.rand(512, 1000, device=dev, generator=g) > 0.5).float()
    results = [
        compare(
            "cross_entropy (smoothing 0.1)",
            lambda z: losskit.cross_entropy(z, t, label_smoothing=0.1),
            x,
            "CrossEntropyFunction",
        ),
        compare(
            "cross_entropy bf16",
            lambda z: losskit.cross_entropy(z, t),
            x.bfloat16(),
            "CrossEntropyFunction",
        ),
        compare(
            "bce_with_logits + pos_weight",
            lambda z: losskit.binary_cross_entropy_with_logits(
                z, y, pos_weight=torch.full((1000,), 2.0, device=dev)
            ),
            x,
            "BinaryLossFunction",
        ),
        compare(
            "sigmoid_focal_loss",
            lambda z: losskit.sigmoid_focal_loss(z, y),
            x,
            "BinaryLossFunction",
        ),
        compare(
            "kl_div batchmean",
            lambda z: losskit.kl_div(z.log_softmax(1), y.softmax(1), reduction="batchmean"),
            x,
            "KLDivFunction",
        ),
    ]
    emb = torch.randn(256, 64, device=dev, generator=g)
    labels = torch.randint(0, 32, (256,), device=dev, generator=g)
    results.append(
        compare(
            "triplet_loss batch_hard", lambda e: losskit.metric.triplet_loss(e, labels), emb, None
        )
    )
    print("all OK" if all(results) else "SOME FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
