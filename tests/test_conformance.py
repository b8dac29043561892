"""The generic conformance suite: every registered loss against its NumPy reference and torch.

Each test takes its oracle from outside the code under test: the NumPy reference (values, finite
differences of the reference, or its analytic gradient), ``torch.nn.functional``, or autograd's
own ``gradcheck``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from registry_helpers import (
    FLOATS,
    HALVES,
    call_functional,
    call_module,
    call_reference,
    call_torch,
    grads_of,
    loss_params,
    loss_sample_params,
    numeric_vjp,
    upstream_like,
    with_grad,
)

SAMPLES = loss_sample_params()
TORCH_SAMPLES = loss_sample_params(where=lambda i: i.torch_functional is not None)
DIFF_SAMPLES = loss_sample_params(where=lambda i: i.differentiable)
EDGES = loss_sample_params("edge_samples", where=lambda i: i.torch_functional is not None)


def _close(actual, expected, rtol, atol, msg=""):
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol, err_msg=msg
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("info", "sample"), SAMPLES)
def test_value_matches_reference(info, sample, dtype):
    for reduction in info.reductions:
        s = sample.cast(dtype).with_reduction(reduction)
        out = call_functional(info, s)
        assert out.dtype == dtype, f"{reduction}: output dtype {out.dtype}, expected {dtype}"
        expected = call_reference(info, sample.cast(dtype).with_reduction(reduction))
        assert out.shape == expected.shape, f"{reduction}: shape {out.shape} vs {expected.shape}"
        rtol, atol = info.tolerance(dtype)
        _close(_np(out), expected, rtol, atol, reduction)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("info", "sample"), TORCH_SAMPLES)
def test_value_and_grad_match_torch(info, sample, dtype):
    if sample.torch_kwargs is None:
        pytest.skip(f"torch has no equivalent of sample {sample.desc!r}")
    rtol, atol = info.tolerance(dtype)
    for reduction in info.reductions:
        ours_s = with_grad(sample.cast(dtype).with_reduction(reduction), info.grad_args)
        theirs_s = with_grad(sample.cast(dtype).with_reduction(reduction), info.grad_args)
        ours, theirs = call_functional(info, ours_s), call_torch(info, theirs_s)
        assert ours.shape == theirs.shape
        _close(_np(ours), _np(theirs), rtol, atol, f"value, {reduction}")
        if not (info.differentiable and info.torch_grad_parity):
            continue
        up = upstream_like(ours)
        g_ours = grads_of(ours, [ours_s.args[k] for k in info.grad_args], up)
        g_theirs = grads_of(theirs, [theirs_s.args[k] for k in info.grad_args], up)
        for k, a, b in zip(info.grad_args, g_ours, g_theirs, strict=True):
            _close(_np(a), _np(b), rtol, atol, f"grad of arg {k}, {reduction}")


@pytest.mark.parametrize(("info", "sample"), DIFF_SAMPLES)
def test_grad_matches_reference_finite_differences(info, sample):
    for reduction in info.reductions:
        s = with_grad(sample.with_reduction(reduction), info.grad_args)
        out = call_functional(info, s)
        up = upstream_like(out)
        grads = grads_of(out, [s.args[k] for k in info.grad_args], up)
        for k, g in zip(info.grad_args, grads, strict=True):
            expected = numeric_vjp(info, sample.with_reduction(reduction), k, _np(up))
            _close(_np(g), expected, 1e-5, 1e-6, f"grad of arg {k}, {reduction}")


ANALYTIC = loss_sample_params(where=lambda i: i.reference_grad is not None)


@pytest.mark.parametrize(("info", "sample"), ANALYTIC)
def test_grad_matches_reference_closed_form(info, sample):
    for reduction in info.reductions:
        s = with_grad(sample.with_reduction(reduction), (0,))
        out = call_functional(info, s)
        up = upstream_like(out)
        (g,) = grads_of(out, [s.args[0]], up)
        args, kwargs = sample.with_reduction(reduction).numpy()
        expected = info.reference_grad(*args, **kwargs, grad_output=_np(up))
        _close(_np(g), expected, 1e-9, 1e-10, reduction)


@pytest.mark.parametrize(("info", "sample"), loss_sample_params(where=lambda i: i.module))
def test_module_equals_functional(info, sample):
    for reduction in info.reductions:
        s = sample.with_reduction(reduction)
        torch.testing.assert_close(call_module(info, s), call_functional(info, s), rtol=0, atol=0)


@pytest.mark.parametrize(("info", "sample"), DIFF_SAMPLES)
def test_gradcheck(info, sample):
    s = sample.with_reduction("sum" if "sum" in info.reductions else info.reductions[-1])
    inputs = [s.args[k].detach().clone().requires_grad_(True) for k in info.grad_args]

    def fn(*diff):
        args = list(s.args)
        for k, d in zip(info.grad_args, diff, strict=True):
            args[k] = d
        return info.functional(*args, **s.kwargs)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def _non_contiguous(value):
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.numel() > 1:
        doubled = torch.stack([value, torch.zeros_like(value)], dim=-1)
        out = doubled[..., 0]
        assert not out.is_contiguous()
        return out
    return value


@pytest.mark.parametrize(("info", "sample"), SAMPLES)
def test_non_contiguous_inputs(info, sample):
    for reduction in info.reductions:
        s = sample.with_reduction(reduction)
        nc = replace(
            s,
            args=tuple(_non_contiguous(a) for a in s.args),
            kwargs={k: _non_contiguous(v) for k, v in s.kwargs.items()},
        )
        expected = call_reference(info, s)
        _close(_np(call_functional(info, nc)), expected, 1e-7, 1e-9, reduction)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize(("info", "sample"), loss_sample_params(where=lambda i: i.supports_half))
def test_half_precision_against_upcast_reference(info, sample, dtype):
    low = sample.cast(dtype)
    # The oracle sees exactly the rounded inputs, in float64.
    upcast = low.cast(torch.float64)
    rtol, atol = info.tolerance(dtype)
    for reduction in info.reductions:
        out = call_functional(info, low.with_reduction(reduction))
        assert out.dtype == dtype
        expected = call_reference(info, upcast.with_reduction(reduction))
        _close(_np(out), expected, rtol, atol, reduction)


@pytest.mark.parametrize(
    "dtype", (torch.float64, torch.float32, torch.float16, torch.bfloat16), ids=str
)
@pytest.mark.parametrize(("info", "sample"), EDGES)
def test_edge_cases_match_torch(info, sample, dtype):
    if dtype in HALVES and not info.supports_half:
        pytest.skip("no half-precision support")
    for reduction in info.reductions:
        ours_s = with_grad(sample.cast(dtype).with_reduction(reduction), info.grad_args)
        theirs_s = with_grad(sample.cast(dtype).with_reduction(reduction), info.grad_args)
        ours, theirs = call_functional(info, ours_s), call_torch(info, theirs_s)
        rtol, atol = info.tolerance(dtype)
        # NaN exactly where torch gives NaN. Where torch overflows to inf in low precision (it
        # accumulates some sums in float16) we must not: there the float64 reference decides.
        expected = _np(theirs)
        overflow = np.isinf(expected)
        if overflow.any():
            reference = call_reference(
                info, sample.cast(dtype).cast(torch.float64).with_reduction(reduction)
            )
            expected = np.where(overflow, reference, expected)
        np.testing.assert_array_equal(np.isnan(_np(ours)), np.isnan(expected), reduction)
        _close(_np(ours), expected, rtol, atol, reduction)
        if not (info.differentiable and info.edge_grad_parity and info.torch_grad_parity):
            continue
        if theirs.requires_grad:
            up = torch.ones_like(ours)
            g_ours = grads_of(ours, [ours_s.args[k] for k in info.grad_args], up)
            g_theirs = grads_of(theirs, [theirs_s.args[k] for k in info.grad_args], up)
            for a, b in zip(g_ours, g_theirs, strict=True):
                a_np = np.zeros(0) if a is None else _np(a)
                b_np = np.zeros(0) if b is None else _np(b)
                if a is None or b is None:
                    assert a_np.size == 0 or not a_np.any()
                    continue
                if dtype in HALVES:
                    # torch's half kernels can give NaN where the float32 computation is finite
                    # (binary_cross_entropy's 1e-12 floor is 0 in float16: 0/0): a NaN of
                    # theirs decides nothing there; everywhere else, equal.
                    torch_nan = np.isnan(b_np)
                    a_np, b_np = a_np[~torch_nan], b_np[~torch_nan]
                _close(a_np, b_np, rtol, atol, f"grad, {reduction}")


@pytest.mark.parametrize(
    ("info", "case"),
    [
        pytest.param(info, case, id=f"{info.name}-{i}-{case.match}"[:80])
        for info in __import__("losskit._registry", fromlist=["x"]).all_losses()
        for i, case in enumerate(info.error_cases())
    ],
)
def test_bad_input_raises(info, case):
    with pytest.raises(case.error, match=case.match):
        info.functional(*case.args, **case.kwargs)
    if info.module is None:
        return
    if case.in_constructor:
        with pytest.raises(case.error, match=case.match):
            info.module(**case.kwargs)
    else:
        with pytest.raises(case.error, match=case.match):
            info.module(**case.kwargs)(*case.args)


@pytest.mark.parametrize("info", loss_params())
def test_unknown_reduction_raises_in_functional_and_constructor(info):
    sample = next(iter(info.samples(torch.Generator().manual_seed(0))))
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction"):
        call_functional(info, sample.with_reduction("avg"))
    if info.module is not None:
        with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction"):
            info.module(**{**sample.kwargs, "reduction": "avg"})
