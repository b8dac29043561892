"""The conformance suite through the Triton kernels, on the CPU under ``TRITON_INTERPRET=1``.

Every loss that declares a ``kernel`` backend runs each of its registry samples with that backend
pinned (``use_backend("kernel")``), in float32 and bfloat16, against the NumPy reference: values,
and the gradient against central differences of the reference. Samples that the kernel's rule
refuses (an option it lacks, float64) are skipped with the rule's reason.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from registry_helpers import (
    backend_sample_params,
    call_functional,
    call_reference,
    grads_of,
    numeric_vjp,
    upstream_like,
    with_grad,
)

pytest.importorskip("triton")

KERNEL = backend_sample_params(where=lambda info, b: b == "kernel")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        # The interpreter evaluates masked-off lanes with NumPy (log 0, inf - inf): harmless.
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=str)
@pytest.mark.parametrize(("info", "sample", "backend"), KERNEL)
def test_kernel_value_matches_reference(info, sample, backend, dtype):
    if dtype == torch.bfloat16 and not info.supports_half:
        pytest.skip("no half-precision conformance (a float32 loss for half inputs; own tests)")
    rtol, atol = info.tolerance(dtype)
    low = sample.cast(dtype)
    for reduction in info.reductions:
        out = call_functional(info, low.with_reduction(reduction), backend)
        assert out.dtype == dtype
        expected = call_reference(info, low.cast(torch.float64).with_reduction(reduction))
        np.testing.assert_allclose(_np(out), expected, rtol=rtol, atol=atol, err_msg=reduction)


@pytest.mark.parametrize(
    ("info", "sample", "backend"), [p for p in KERNEL if p.values[0].differentiable]
)
def test_kernel_grad_matches_reference_finite_differences(info, sample, backend):
    # The kernels differentiate their first input (logits, log-probabilities); a call that also
    # needs a target gradient is refused by their rules and runs the PyTorch path instead.
    f32 = sample.cast(torch.float32)
    for reduction in info.reductions:
        s = with_grad(f32.with_reduction(reduction), (0,))
        out = call_functional(info, s, backend)
        up = upstream_like(out)
        (g,) = grads_of(out, [s.args[0]], up)
        exact = f32.cast(torch.float64).with_reduction(reduction)
        expected = numeric_vjp(info, exact, 0, _np(up))
        np.testing.assert_allclose(
            _np(g), expected, rtol=1e-4, atol=1e-5, err_msg=f"grad, {reduction}"
        )
