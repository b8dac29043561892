"""Every registered loss compiles whole under ``torch.compile`` and gives the eager answer.

``backend="aot_eager"`` traces with dynamo and AOTAutograd (forward and backward graphs) without
generating code, so it checks what matters here (no graph break, no data-dependent guard from a
value check) in a fraction of inductor's time; one inductor smoke test runs at the end. The
oracle is the same loss in eager mode, itself checked against the NumPy reference elsewhere.
Default checks (``"all"``) are on: value checks must skip themselves while compiling.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from losskit._registry import all_losses
from registry_helpers import samples_of, upstream_like


def _first_sample(info):
    return samples_of(info)[0].cast(torch.float32)


def _params(where):
    return [pytest.param(i, id=i.name) for i in all_losses() if where(i)]


def _run(info, sample, fn, reduction):
    s = sample.with_reduction(reduction) if reduction in info.reductions else sample
    args = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in s.args]
    for k in info.grad_args if info.differentiable else ():
        args[k].requires_grad_(True)
    out = fn(*args, **s.kwargs)
    grads = []
    if info.differentiable and out.requires_grad:
        inputs = [args[k] for k in info.grad_args]
        grads = torch.autograd.grad(out, inputs, upstream_like(out), allow_unused=True)
    return out, grads


def _compare_compiled(info, fullgraph: bool, backend: str = "aot_eager"):
    sample = _first_sample(info)
    torch._dynamo.reset()

    def call(*args, **kwargs):
        return info.functional(*args, **kwargs)

    compiled = torch.compile(call, fullgraph=fullgraph, backend=backend)
    for reduction in dict.fromkeys(("mean", info.reductions[0])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            want, want_grads = _run(info, sample, call, reduction)
            got, got_grads = _run(info, sample, compiled, reduction)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert len(got_grads) == len(want_grads)
        for g, w in zip(got_grads, want_grads, strict=True):
            if g is None or w is None:
                assert g is None and w is None
                continue
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("info", _params(lambda i: i.compiles_whole))
def test_compiles_whole_and_matches_eager(info):
    _compare_compiled(info, fullgraph=True)


@pytest.mark.parametrize("info", _params(lambda i: not i.compiles_whole))
def test_data_dependent_losses_compile_with_breaks(info):
    # Their output shape depends on the data (the mined triplets): graph breaks are expected,
    # the answer must still be eager's.
    _compare_compiled(info, fullgraph=False)


def test_inductor_smoke():
    """One real code-generating compile (inductor on the CPU) of a torch mirror and a formula."""
    import losskit

    torch._dynamo.reset()
    x = torch.randn(16, 5, requires_grad=True)
    y = torch.randint(5, (16,))

    def step(x, y):
        return losskit.cross_entropy(x, y, label_smoothing=0.1) + losskit.softmax_focal_loss(x, y)

    compiled = torch.compile(step, fullgraph=True)
    got = compiled(x, y)
    (g_got,) = torch.autograd.grad(got, x)
    want = step(x, y)
    (g_want,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)
