"""The benchmark cases: inputs, the contenders (losskit, torch eager, torch.compile, peers) and
the fewest bytes each case must move through device memory.

Every contender is a function ``fn(inputs) -> scalar loss``; the runner calls ``backward()`` on it.
A contender whose package is missing is reported as unavailable, never silently dropped.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

Inputs = dict[str, Any]
LossFn = Callable[[Inputs], torch.Tensor]


class Unavailable(Exception):
    """A contender that cannot run here (package missing, CUDA only, torch too old)."""


@dataclass
class Case:
    name: str
    title: str
    sizes: dict[str, dict[str, int]]  # device type -> sizes
    dtype: dict[str, torch.dtype]  # device type -> dtype of the floating inputs
    make: Callable[[dict[str, int], torch.dtype, torch.device, torch.Generator], Inputs]
    grad_keys: tuple[str, ...]
    # name -> factory (may raise Unavailable). "losskit" calls the public function as a user
    # does; the runner times it once per backend of ``loss`` that can run on the device.
    contenders: dict[str, Callable[[], LossFn]]
    formula: str  # the contender that ``torch.compile`` compiles
    floor_bytes: Callable[[Inputs], int] | None = None
    floor_flops: Callable[[dict[str, int]], float] | None = None
    notes: list[str] = field(default_factory=list)
    loss: str | None = None  # the registry name of the loss the "losskit" contender calls

    def describe(self, device: str) -> str:
        s = self.sizes[device]
        dims = " × ".join(f"{k}={v}" for k, v in s.items())
        return f"{self.title}, {dims}, {str(self.dtype[device]).replace('torch.', '')}"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a peer that fails to import against this torch
        raise Unavailable(f"{module} not importable ({type(e).__name__})") from None


def _cuda_only(inputs: Inputs, who: str) -> None:
    if not inputs["_device"].startswith("cuda"):
        raise Unavailable(f"{who} runs on CUDA only")


def _elements(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# ---------------------------------------------------------------- cross entropy


def _ce_make(s, dtype, device, g):
    n, v = s["N"], s["V"]
    x = torch.randn(n, v, generator=g, device="cpu").to(device=device, dtype=dtype)
    t = torch.randint(0, v, (n,), generator=g).to(device)
    t[torch.rand(n, generator=g).to(device) < 0.1] = -100
    return {"x": x, "t": t}


def _ce_torch() -> LossFn:
    return lambda i: F.cross_entropy(i["x"], i["t"])


def _ce_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.cross_entropy(i["x"], i["t"])


def _ce_liger() -> LossFn:
    mod = _require("liger_kernel.transformers.functional")

    def fn(i: Inputs) -> torch.Tensor:
        _cuda_only(i, "Liger-Kernel")
        return mod.liger_cross_entropy(i["x"], i["t"], ignore_index=-100)

    return fn


CE = Case(
    name="cross_entropy",
    loss="cross_entropy",
    title="cross entropy, ignore_index on 10%",
    sizes={"cuda": {"N": 8192, "V": 128256}, "cpu": {"N": 256, "V": 8192}},
    dtype={"cuda": torch.bfloat16, "cpu": torch.float32},
    make=_ce_make,
    grad_keys=("x",),
    contenders={"losskit": _ce_losskit, "torch eager": _ce_torch, "Liger-Kernel": _ce_liger},
    formula="torch eager",
    floor_bytes=lambda i: 2 * _elements(i["x"]) + _elements(i["t"]),  # read logits, write grad
    notes=["Liger-Kernel overwrites the logits with their gradient; losskit does not."],
)

# ---------------------------------------------------------------- linear cross entropy


def _lce_make(s, dtype, device, g):
    n, h, v = s["N"], s["H"], s["V"]
    x = (torch.randn(n, h, generator=g) / math.sqrt(h)).to(device=device, dtype=dtype)
    w = (torch.randn(v, h, generator=g)).to(device=device, dtype=dtype)
    t = torch.randint(0, v, (n,), generator=g).to(device)
    return {"x": x, "w": w, "t": t}


def _lce_torch() -> LossFn:
    return lambda i: F.cross_entropy(F.linear(i["x"], i["w"]), i["t"])


def _lce_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.linear_cross_entropy(i["x"], i["w"], i["t"])


def _lce_torch_chunked() -> LossFn:
    fn = getattr(F, "linear_cross_entropy", None)
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if fn is None or options is None:
        raise Unavailable(f"torch {torch.__version__} has no chunked linear_cross_entropy")
    return lambda i: fn(i["x"], i["w"], i["t"], options=options())


def _lce_liger() -> LossFn:
    mod = _require("liger_kernel.transformers.functional")

    def fn(i: Inputs) -> torch.Tensor:
        _cuda_only(i, "Liger-Kernel")
        return mod.liger_fused_linear_cross_entropy(i["x"], i["w"], i["t"])

    return fn


LINEAR_CE = Case(
    name="linear_cross_entropy",
    loss="linear_cross_entropy",
    title="linear + cross entropy",
    sizes={"cuda": {"N": 8192, "H": 4096, "V": 128256}, "cpu": {"N": 512, "H": 256, "V": 8192}},
    dtype={"cuda": torch.bfloat16, "cpu": torch.float32},
    make=_lce_make,
    grad_keys=("x", "w"),
    contenders={
        "losskit": _lce_losskit,
        "torch eager": _lce_torch,
        "torch chunked": _lce_torch_chunked,
        "Liger-Kernel fused": _lce_liger,
    },
    formula="torch eager",
    floor_flops=lambda s: 6.0 * s["N"] * s["H"] * s["V"],
)

# ---------------------------------------------------------------- sigmoid focal / BCE


def _binary_make(s, dtype, device, g):
    n, c = s["N"], s["C"]
    x = (torch.randn(n, c, generator=g) * 2).to(device=device, dtype=dtype)
    y = (torch.rand(n, c, generator=g) < 0.05).to(device=device, dtype=dtype)
    pw = (torch.rand(c, generator=g) * 3 + 0.5).to(device=device, dtype=dtype)
    return {"x": x, "y": y, "pw": pw}


def _focal_formula(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # torchvision.ops.sigmoid_focal_loss's formula (alpha 0.25, gamma 2, mean), written out.
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** 2
    loss = (0.25 * y + 0.75 * (1 - y)) * loss
    return loss.mean()


def _focal_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.sigmoid_focal_loss(i["x"], i["y"])


def _focal_torchvision() -> LossFn:
    ops = _require("torchvision.ops")
    return lambda i: ops.sigmoid_focal_loss(i["x"], i["y"], reduction="mean")


FOCAL = Case(
    name="sigmoid_focal",
    loss="sigmoid_focal_loss",
    title="sigmoid focal loss (alpha 0.25, gamma 2)",
    sizes={"cuda": {"N": 1_000_000, "C": 80}, "cpu": {"N": 50_000, "C": 80}},
    dtype={"cuda": torch.float32, "cpu": torch.float32},
    make=_binary_make,
    grad_keys=("x",),
    contenders={
        "losskit": _focal_losskit,
        "torch eager (torchvision formula)": lambda: lambda i: _focal_formula(i["x"], i["y"]),
        "torchvision": _focal_torchvision,
    },
    formula="torch eager (torchvision formula)",
    floor_bytes=lambda i: 3 * _elements(i["x"]),  # read x, read y, write grad
)


def _bce_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.binary_cross_entropy_with_logits(i["x"], i["y"], pos_weight=i["pw"])


BCE = Case(
    name="bce_with_logits",
    loss="binary_cross_entropy_with_logits",
    title="BCE with logits + pos_weight",
    sizes=FOCAL.sizes,
    dtype=FOCAL.dtype,
    make=_binary_make,
    grad_keys=("x",),
    contenders={
        "losskit": _bce_losskit,
        "torch eager": lambda: (
            lambda i: F.binary_cross_entropy_with_logits(i["x"], i["y"], pos_weight=i["pw"])
        ),
    },
    formula="torch eager",
    floor_bytes=lambda i: 3 * _elements(i["x"]),
)

# ---------------------------------------------------------------- KL distillation


def _kd_make(s, dtype, device, g):
    n, v = s["N"], s["V"]
    return {
        "s": (torch.randn(n, v, generator=g) * 2).to(device=device, dtype=dtype),
        "t": (torch.randn(n, v, generator=g) * 2).to(device=device, dtype=dtype),
    }


def _kd_torch(i: Inputs) -> torch.Tensor:
    log_p = F.log_softmax(i["s"].float(), dim=-1)
    log_q = F.log_softmax(i["t"].float(), dim=-1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


def _kd_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.distillation_kl_div(i["s"], i["t"])


def _jsd_liger() -> LossFn:
    mod = _require("liger_kernel.transformers.functional")

    def fn(i: Inputs) -> torch.Tensor:
        _cuda_only(i, "Liger-Kernel")
        log_p = torch.log_softmax(i["s"].float(), -1)
        log_q = torch.log_softmax(i["t"].float(), -1)
        return mod.liger_jsd(log_p, log_q, beta=0.5)

    return fn


KD = Case(
    name="kl_distillation",
    loss="distillation_kl_div",
    title="KL distillation, log_softmax of student and teacher",
    sizes={"cuda": {"N": 8192, "V": 32000}, "cpu": {"N": 256, "V": 8192}},
    dtype={"cuda": torch.bfloat16, "cpu": torch.float32},
    make=_kd_make,
    grad_keys=("s",),
    contenders={"losskit": _kd_losskit, "torch eager": lambda: _kd_torch},
    formula="torch eager",
    floor_bytes=lambda i: 3 * _elements(i["s"]),  # read s, read t, write grad
)


def _jsd_losskit() -> LossFn:
    import losskit

    return lambda i: losskit.jsd(i["s"], i["t"], beta=0.5)


def _jsd_torch(i: Inputs) -> torch.Tensor:
    log_p = F.log_softmax(i["s"].float(), dim=-1)
    log_q = F.log_softmax(i["t"].float(), dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    kl_q = F.kl_div(log_m, log_q, reduction="batchmean", log_target=True)
    kl_p = F.kl_div(log_m, log_p, reduction="batchmean", log_target=True)
    return 0.5 * (kl_q + kl_p)


JSD = Case(
    name="jsd",
    loss="jsd",
    title="JSD distillation (beta 0.5), log_softmax inside",
    sizes=KD.sizes,
    dtype=KD.dtype,
    make=_kd_make,
    grad_keys=("s",),
    contenders={
        "losskit": _jsd_losskit,
        "torch eager": lambda: _jsd_torch,
        "Liger-Kernel (+ log_softmax)": _jsd_liger,
    },
    formula="torch eager",
    floor_bytes=lambda i: 3 * _elements(i["s"]),
)

# ---------------------------------------------------------------- batch-hard triplet


def _tri_make(s, dtype, device, g):
    b, d = s["B"], s["D"]
    x = torch.randn(b, d, generator=g).to(device=device, dtype=dtype)
    labels = (torch.arange(b) % max(b // 8, 1)).to(device)  # P x K batch, K = 8
    return {"x": x, "labels": labels}


def _tri_torch(i: Inputs, margin: float = 0.2) -> torch.Tensor:
    x, labels = i["x"], i["labels"]
    sq = x.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=x.device)
    d_ap = torch.where(same & ~eye, d, torch.zeros_like(d)).max(1).values
    d_an = torch.where(same, torch.full_like(d, float("inf")), d).min(1).values
    return F.relu(d_ap - d_an + margin).mean()


def _tri_losskit() -> LossFn:
    from losskit.metric import triplet_loss

    return lambda i: triplet_loss(i["x"], i["labels"], margin=0.2, mining="batch_hard")


def _tri_pml() -> LossFn:
    losses = _require("pytorch_metric_learning.losses")
    miners = _require("pytorch_metric_learning.miners")
    miner = miners.BatchHardMiner()
    loss = losses.TripletMarginLoss(margin=0.2)

    def fn(i: Inputs) -> torch.Tensor:
        return loss(i["x"], i["labels"], miner(i["x"], i["labels"]))

    return fn


TRIPLET = Case(
    name="batch_hard_triplet",
    loss="triplet_batch_hard",
    title="batch-hard triplet (P×K, K=8, margin 0.2)",
    sizes={"cuda": {"B": 4096, "D": 512}, "cpu": {"B": 1024, "D": 128}},
    dtype={"cuda": torch.float32, "cpu": torch.float32},
    make=_tri_make,
    grad_keys=("x",),
    contenders={
        "losskit": _tri_losskit,
        "torch eager (vectorised B×B)": lambda: _tri_torch,
        "pytorch-metric-learning": _tri_pml,
    },
    formula="torch eager (vectorised B×B)",
)

CASES: dict[str, Case] = {c.name: c for c in (CE, LINEAR_CE, FOCAL, BCE, KD, JSD, TRIPLET)}

# ---------------------------------------------------------------- language-model head


def _lm_make(s, dtype, device, g):
    b, t, h, v = s["B"], s["T"], s["H"], s["V"]
    x = (torch.randn(b, t, h, generator=g) / math.sqrt(h)).to(device=device, dtype=dtype)
    w = (torch.randn(v, h, generator=g) / math.sqrt(h)).to(device=device, dtype=dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.1] = -100
    return {"x": x, "w": w, "labels": labels.to(device)}


def _lm_shifted(i: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's shift: labels one step left, the last position ignored; rows flattened."""
    shifted = F.pad(i["labels"][..., 1:], (0, 1), value=-100)
    return i["x"].reshape(-1, i["x"].shape[-1]), shifted.reshape(-1)


def _lm_losskit() -> LossFn:
    from losskit.lm import causal_lm_loss

    return lambda i: causal_lm_loss(i["x"], i["w"], i["labels"])


def _lm_eager() -> LossFn:
    def fn(i: Inputs) -> torch.Tensor:  # transformers' ForCausalLMLoss on lm_head(x)
        x, t = _lm_shifted(i)
        return F.cross_entropy(F.linear(x, i["w"]).float(), t)

    return fn


def _lm_torch_op(chunked: bool) -> Callable[[], LossFn]:
    def factory() -> LossFn:
        fn = getattr(F, "linear_cross_entropy", None)
        options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
        if fn is None or options is None:
            raise Unavailable(f"torch {torch.__version__} has no linear_cross_entropy")
        opts = options() if chunked else None

        def run(i: Inputs) -> torch.Tensor:
            x, t = _lm_shifted(i)
            return fn(x, i["w"], t, options=opts)

        return run

    return factory


def _lm_cce() -> LossFn:
    mod = _require("cut_cross_entropy")
    return lambda i: mod.linear_cross_entropy(i["x"], i["w"], i["labels"], shift=1)


def _lm_liger() -> LossFn:
    mod = _require("liger_kernel.transformers.functional")

    def fn(i: Inputs) -> torch.Tensor:
        _cuda_only(i, "Liger-Kernel")
        x, t = _lm_shifted(i)
        return mod.liger_fused_linear_cross_entropy(x, i["w"], t)

    return fn


LM_HEAD = Case(
    name="lm_head",
    loss="causal_lm_loss",
    title="causal-LM head: hidden states (B, T, H) -> shifted next-token loss, 10% ignored",
    sizes={
        "cuda": {"B": 8, "T": 1024, "H": 4096, "V": 128256},
        "cpu": {"B": 4, "T": 1024, "H": 512, "V": 32768},
    },
    dtype={"cuda": torch.bfloat16, "cpu": torch.float32},
    make=_lm_make,
    grad_keys=("x", "w"),
    contenders={
        "losskit": _lm_losskit,
        "torch eager (matmul + CE)": _lm_eager,
        "torch linear_cross_entropy": _lm_torch_op(False),
        "torch linear_cross_entropy chunked": _lm_torch_op(True),
        "cut-cross-entropy": _lm_cce,
        "Liger-Kernel fused": _lm_liger,
    },
    formula="torch eager (matmul + CE)",
    floor_flops=lambda s: 6.0 * s["B"] * s["T"] * s["H"] * s["V"],
    notes=["benchmarks/bench_lm_head_cpu.py measures the CPU memory (resident set) too."],
)
CASES[LM_HEAD.name] = LM_HEAD
