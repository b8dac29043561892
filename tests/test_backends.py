"""Every declared backend of every loss against the NumPy reference.

``tests/test_conformance.py`` runs the functional as users call it (the default backend: torch's
op for a mirror on the CPU). Here every *other* CPU backend of a loss (its ``formula`` when
``torch`` is the default, and vice versa) is pinned with ``use_backend`` and checked against the
same oracles: reference values in float64/float32 and half precision, and central differences of
the reference for the gradient. The kernels run under Triton's interpreter in
``tests/kernels/test_kernel_conformance.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losskit._dispatch import BackendUnsupportedError, use_backend
from registry_helpers import (
    FLOATS,
    HALVES,
    call_functional,
    call_reference,
    default_backend,
    grads_of,
    numeric_vjp,
    upstream_like,
    with_grad,
)
from registry_helpers import backend_sample_params as _params

OTHER = _params(where=lambda info, b: b != "kernel" and b != default_backend(info))
OTHER_DIFF = _params(
    where=lambda info, b: info.differentiable and b != "kernel" and b != default_backend(info)
)
OTHER_HALF = _params(
    where=lambda info, b: info.supports_half and b != "kernel" and b != default_backend(info)
)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("info", "sample", "backend"), OTHER)
def test_backend_value_matches_reference(info, sample, backend, dtype):
    rtol, atol = info.tolerance(dtype)
    for reduction in info.reductions:
        s = sample.cast(dtype).with_reduction(reduction)
        out = call_functional(info, s, backend)
        assert out.dtype == dtype
        expected = call_reference(info, s)
        np.testing.assert_allclose(_np(out), expected, rtol=rtol, atol=atol, err_msg=reduction)


@pytest.mark.parametrize(("info", "sample", "backend"), OTHER_DIFF)
def test_backend_grad_matches_reference_finite_differences(info, sample, backend):
    for reduction in info.reductions:
        s = with_grad(sample.with_reduction(reduction), info.grad_args)
        out = call_functional(info, s, backend)
        up = upstream_like(out)
        grads = grads_of(out, [s.args[k] for k in info.grad_args], up)
        for k, g in zip(info.grad_args, grads, strict=True):
            expected = numeric_vjp(info, sample.with_reduction(reduction), k, _np(up))
            np.testing.assert_allclose(
                _np(g), expected, rtol=1e-5, atol=1e-6, err_msg=f"grad {k}, {reduction}"
            )


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize(("info", "sample", "backend"), OTHER_HALF)
def test_backend_half_precision_against_upcast_reference(info, sample, backend, dtype):
    low = sample.cast(dtype)
    rtol, atol = info.tolerance(dtype)
    for reduction in info.reductions:
        out = call_functional(info, low.with_reduction(reduction), backend)
        assert out.dtype == dtype
        expected = call_reference(info, low.cast(torch.float64).with_reduction(reduction))
        np.testing.assert_allclose(_np(out), expected, rtol=rtol, atol=atol, err_msg=reduction)


def test_pinning_an_undeclared_backend_raises():
    import losskit

    x, y = torch.randn(3, 4), torch.randn(3, 4)
    with use_backend("kernel"), pytest.raises(BackendUnsupportedError, match="huber_loss"):
        losskit.huber_loss(x, y)


def test_use_backend_is_thread_local_and_restores():
    import threading

    from losskit import get_backend

    seen = []
    with use_backend("formula"):
        t = threading.Thread(target=lambda: seen.append(get_backend()))
        t.start()
        t.join()
        assert get_backend() == "formula"
    assert get_backend() == "auto"
    assert seen == ["auto"]
    with pytest.raises(ValueError, match=r"use_backend\(\) got 'fast'"):
        use_backend("fast")


def test_traced_reports_the_backend_each_call_runs_on():
    import losskit
    from losskit._dispatch import traced

    x, y = torch.randn(3, 4), torch.randn(3, 4)
    with traced() as calls:
        losskit.huber_loss(x, y)
        losskit.soft_margin_loss(x, y.sign())  # its formula is the documented default
        with use_backend("formula"):
            losskit.binary_cross_entropy_with_logits(x, y.sigmoid())
    assert calls == [
        ("huber_loss", "torch"),
        ("soft_margin_loss", "formula"),
        ("binary_cross_entropy_with_logits", "formula"),
    ]
    with traced() as calls:
        pass
    assert calls == []
