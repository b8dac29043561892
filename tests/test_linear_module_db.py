"""torch's own test inputs for ``nn.LinearCrossEntropyLoss`` through ``losskit.nn``.

Every ``ModuleInput`` of torch 2.13's ``module_db`` entry (857 of them: K-dimensional outputs,
class-probability targets, ``ignore_index=None``, every ``LinearCrossEntropyOptions``) builds
torch's Module and losskit's with the same arguments and the same parameters; the loss and the
gradients of the input and of every parameter must agree, and where torch raises, losskit
raises too.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import losskit

pytest.importorskip("expecttest")  # torch.testing._internal imports it
common_modules = pytest.importorskip("torch.testing._internal.common_modules")
if not hasattr(torch.nn, "LinearCrossEntropyLoss"):
    pytest.skip("torch < 2.13 has no LinearCrossEntropyLoss", allow_module_level=True)

TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6)}


@pytest.fixture(autouse=True)
def _one_thread():
    # Hundreds of tiny products: one thread is 3x faster than two on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _module_inputs(dtype: torch.dtype) -> list:
    (info,) = [
        m for m in common_modules.module_db if m.module_cls is torch.nn.LinearCrossEntropyLoss
    ]
    return info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=True, training=True
    )


def _run(cls, mi, state=None):
    """``(module, loss, grads)`` or the exception raised."""
    try:
        torch.manual_seed(0)
        module = cls(*mi.constructor_input.args, **mi.constructor_input.kwargs)
        if state is not None:
            module.load_state_dict(state)
        x, t = (a.detach().clone().requires_grad_(a.requires_grad) for a in mi.forward_input.args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: "options ignored" fallbacks
            out = module(x, t, **mi.forward_input.kwargs)
        params = [x, *module.parameters()]
        grads = torch.autograd.grad(out, params, torch.ones_like(out), allow_unused=True)
        return module, out, grads
    except Exception as e:  # compared below: torch's failures must be losskit's failures
        return e


@pytest.mark.parametrize(
    ("dtype", "every"),
    # All 857 in float32; every 5th in float64 (the same code at a tighter tolerance), to keep
    # the file near 15 s.
    [(torch.float32, 1), (torch.float64, 5)],
    ids=["float32-all", "float64-every-5th"],
)
def test_module_db_inputs_match_torch(dtype, every):
    inputs = _module_inputs(dtype)
    assert len(inputs) >= 857
    inputs = inputs[::every]
    rtol, atol = TOL[dtype]
    compared = raised = 0
    for i, mi in enumerate(inputs):
        theirs = _run(torch.nn.LinearCrossEntropyLoss, mi)
        if isinstance(theirs, Exception):
            ours = _run(losskit.nn.LinearCrossEntropyLoss, mi)
            assert isinstance(ours, (ValueError, TypeError, IndexError, RuntimeError)), (
                f"input {i}: torch raised {theirs!r}, losskit gave {ours!r}"
            )
            raised += 1
            continue
        module, out_t, grads_t = theirs
        ours = _run(losskit.nn.LinearCrossEntropyLoss, mi, module.state_dict())
        assert not isinstance(ours, Exception), f"input {i}: losskit raised {ours!r}"
        _, out_o, grads_o = ours
        ctx = f"input {i}: {mi.constructor_input.kwargs}"
        assert out_o.shape == out_t.shape, ctx
        torch.testing.assert_close(out_o, out_t, rtol=rtol, atol=atol, equal_nan=True, msg=ctx)
        for g_o, g_t in zip(grads_o, grads_t, strict=True):
            if g_t is None:
                assert g_o is None or not g_o.abs().sum(), ctx
                continue
            torch.testing.assert_close(g_o, g_t, rtol=rtol, atol=atol, equal_nan=True, msg=ctx)
        compared += 1
    assert compared > 0.7 * len(inputs) and raised + compared == len(inputs)
