"""Helpers of the registry-driven tests: build the parameter lists, call a loss three ways.

(A plain module, not conftest.py: a second conftest under tests/kernels would shadow the name.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from losskit._dispatch import BackendUnsupportedError, use_backend
from losskit._registry import LossInfo, Sample, all_losses

FLOATS = (torch.float64, torch.float32)
HALVES = (torch.float16, torch.bfloat16)


def samples_of(info: LossInfo, kind: str = "samples", seed: int = 0) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    return list(getattr(info, kind)(g))


def loss_sample_params(kind: str = "samples", where=lambda info: True) -> list:
    """pytest params ``(info, sample)`` over every registered loss and its samples of ``kind``."""
    params = []
    for info in all_losses():
        if not where(info):
            continue
        for i, s in enumerate(samples_of(info, kind)):
            params.append(pytest.param(info, s, id=f"{info.name}-{i}-{s.desc}".replace(" ", "_")))
    return params


def backend_sample_params(kind: str = "samples", where=lambda info, backend: True) -> list:
    """pytest params ``(info, sample, backend)``: every sample through each declared backend
    that ``where(info, backend)`` selects."""
    params = []
    for info in all_losses():
        backends = [b for b in info.backend_names if where(info, b)]
        if not backends:
            continue
        for i, s in enumerate(samples_of(info, kind)):
            for b in backends:
                sid = f"{info.name}-{b}-{i}-{s.desc}".replace(" ", "_")
                params.append(pytest.param(info, s, b, id=sid))
    return params


def default_backend(info: LossInfo) -> str:
    """The backend the functional runs on the CPU in auto mode."""
    record = info.dispatch_record
    return "formula" if record is None else record.default()


def loss_params(where=lambda info: True) -> list:
    return [pytest.param(i, id=i.name) for i in all_losses() if where(i)]


def reductions_of(info: LossInfo) -> tuple[str, ...]:
    return info.reductions


def with_grad(sample: Sample, grad_args: tuple[int, ...]) -> Sample:
    """A copy whose differentiable positional tensors are leaves requiring grad."""
    args = list(sample.args)
    for k in grad_args:
        args[k] = args[k].detach().clone().requires_grad_(True)
    return replace(sample, args=tuple(args))


def call_functional(info: LossInfo, sample: Sample, backend: str = "auto") -> torch.Tensor:
    """The functional, as users call it, with ``backend`` pinned (``"auto"``: not pinned).

    A backend whose rule refuses this sample skips the test, naming the reason.
    """
    if backend == "auto":
        return info.functional(*sample.args, **sample.kwargs)
    with use_backend(backend):
        try:
            return info.functional(*sample.args, **sample.kwargs)
        except BackendUnsupportedError as exc:
            pytest.skip(str(exc))


def call_module(info: LossInfo, sample: Sample) -> torch.Tensor:
    assert info.module is not None
    return info.module(**sample.kwargs)(*sample.args)


def call_torch(info: LossInfo, sample: Sample) -> torch.Tensor:
    assert info.torch_functional is not None and sample.torch_kwargs is not None
    return info.torch_functional(*sample.args, **{**sample.kwargs, **sample.torch_kwargs})


def call_reference(info: LossInfo, sample: Sample) -> np.ndarray:
    args, kwargs = sample.numpy()
    return np.asarray(info.reference(*args, **kwargs), dtype=np.float64)


def grads_of(out: torch.Tensor, inputs: list[torch.Tensor], upstream: torch.Tensor):
    return torch.autograd.grad(out, inputs, upstream, allow_unused=True)


def upstream_like(out: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A random upstream gradient, so reduction="none" checks a full vector-Jacobian product."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)


def numeric_vjp(
    info: LossInfo, sample: Sample, argnum: int, upstream: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    """Central differences of ``sum(upstream * reference(...))`` w.r.t. positional ``argnum``."""
    args, kwargs = sample.numpy()
    x = np.array(args[argnum], dtype=np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for j in range(flat.size):
        vals = []
        for step in (h, -h):
            xp = flat.copy()
            xp[j] += step
            a = list(args)
            a[argnum] = xp.reshape(x.shape)
            vals.append(float(np.sum(upstream * info.reference(*a, **kwargs))))
        grad.reshape(-1)[j] = (vals[0] - vals[1]) / (2 * h)
    return grad
