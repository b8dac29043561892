"""kl_div: worked numbers and option interactions the generic suite cannot see.

Oracles: hand-computed closed forms, ``torch.nn.functional.kl_div`` and the NumPy reference.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit import nn as lnn
from losskit import reference as R

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum", "batchmean")


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _torch_kl(*args, **kwargs) -> torch.Tensor:
    with warnings.catch_warnings():  # torch warns for reduction="mean"
        warnings.simplefilter("ignore", UserWarning)
        return TF.kl_div(*args, **kwargs)


def _grads(fn, x: torch.Tensor, p: torch.Tensor, **kwargs) -> tuple[torch.Tensor, ...]:
    """``fn(x, p, **kwargs)`` and its gradients w.r.t. ``x`` and ``p`` (upstream: ones)."""
    x = x.detach().clone().requires_grad_(True)
    p = p.detach().clone().requires_grad_(True)
    out = fn(x, p, **kwargs)
    return (out, *torch.autograd.grad(out.sum(), [x, p]))


def test_worked_number_is_the_kl_divergence():
    p, q = t(0.5, 0.5), t(0.25, 0.75)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert losskit.kl_div(q.log(), p, reduction="sum").item() == pytest.approx(expected, rel=1e-14)
    assert losskit.kl_div(q.log(), p.log(), "sum", True).item() == pytest.approx(
        expected, rel=1e-14
    )
    assert float(R.kl_div(np.log(q.numpy()), p.numpy(), "sum")) == pytest.approx(
        expected, rel=1e-14
    )
    assert _torch_kl(q.log(), p, reduction="sum").item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (6,), ()])
def test_batchmean_divides_the_sum_by_the_first_dimension(shape):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g, dtype=F64)
    p = torch.rand(shape, generator=g, dtype=F64) + 0.1
    total = (p * (p.log() - x)).sum().item()
    batch = shape[0] if shape else 1  # a 0-D input: the plain sum (torch's rule)
    ours = losskit.kl_div(x, p, reduction="batchmean")
    assert ours.item() == pytest.approx(total / batch, rel=1e-12)
    torch.testing.assert_close(ours, _torch_kl(x, p, reduction="batchmean"), rtol=1e-12, atol=0)
    mean = losskit.kl_div(x, p, reduction="mean")
    assert mean.item() == pytest.approx(total / max(p.numel(), 1), rel=1e-12)


def test_batchmean_of_an_empty_batch_is_nan_and_of_an_empty_support_is_zero():
    for shape, nan in (((0, 3), True), ((2, 0), False)):
        x, p = torch.zeros(shape, dtype=F64), torch.zeros(shape, dtype=F64)
        ours = losskit.kl_div(x, p, reduction="batchmean")
        theirs = _torch_kl(x, p, reduction="batchmean")
        assert torch.isnan(ours).item() == nan == torch.isnan(theirs).item()
        if not nan:
            assert ours.item() == theirs.item() == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_targets_contribute_zero_and_negative_targets_give_nan_as_torch(reduction):
    x = torch.log_softmax(torch.randn(2, 4, dtype=F64), dim=1)
    p = t(0.0, 0.5, 0.5, 0.0, -0.25, 0.5, 0.75, 0.0).reshape(2, 4)
    ours = _grads(losskit.kl_div, x, p, reduction=reduction)
    theirs = _grads(_torch_kl, x, p, reduction=reduction)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0, equal_nan=True)
    none = losskit.kl_div(x, p, reduction="none")
    assert (none[p == 0] == 0).all()
    assert torch.isnan(none[1, 0]) and torch.isfinite(none[p != -0.25]).all()
    # The input gradient is -p everywhere (finite even at the NaN element); the target gradient
    # log p + 1 - x is NaN at p = 0 and p < 0, as torch.
    _, gx, gp = _grads(losskit.kl_div, x, p, reduction="sum")
    torch.testing.assert_close(gx, -p)
    assert torch.isnan(gp[p <= 0]).all() and torch.isfinite(gp[p > 0]).all()


def test_log_target_equals_the_probability_form_in_value_and_input_gradient():
    x = torch.log_softmax(torch.randn(3, 5, dtype=F64), dim=1)
    p = torch.softmax(torch.randn(3, 5, dtype=F64), dim=1)
    for reduction in REDUCTIONS:
        plain = _grads(losskit.kl_div, x, p, reduction=reduction)
        logged = _grads(losskit.kl_div, x, p.log(), reduction=reduction, log_target=True)
        torch.testing.assert_close(plain[0], logged[0])
        torch.testing.assert_close(plain[1], logged[1])
        # chain rule: d/d(log p) = p * d/dp
        torch.testing.assert_close(logged[2], p * plain[2])


@pytest.mark.parametrize("log_target", [False, True])
def test_target_gradient_has_the_closed_form_and_matches_torch(log_target):
    x = torch.randn(3, 4, dtype=F64)
    p = torch.rand(3, 4, dtype=F64) + 0.05
    target = p.log() if log_target else p
    ours = _grads(losskit.kl_div, x, target, reduction="sum", log_target=log_target)
    theirs = _grads(_torch_kl, x, target, reduction="sum", log_target=log_target)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # d/dp [p (log p - x)] = log p + 1 - x;  d/dt [e^t (t - x)] = e^t (t - x + 1)
    expected = p * (p.log() - x + 1) if log_target else p.log() + 1 - x
    torch.testing.assert_close(ours[2], expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
def test_reference_closed_form_gradient_matches_torch_autograd(reduction, log_target):
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    target = torch.randn(3, 4, dtype=F64) if log_target else torch.rand(3, 4, dtype=F64)
    out = _torch_kl(x, target, reduction=reduction, log_target=log_target)
    up = torch.randn(out.shape, dtype=F64)
    (g,) = torch.autograd.grad(out, [x], up)
    ref = R.kl_div_grad(
        x.detach().numpy(), target.numpy(), reduction, log_target, grad_output=up.numpy()
    )
    np.testing.assert_allclose(ref, g.numpy(), rtol=1e-12, atol=1e-14)


def test_mean_does_not_warn_and_matches_torch():
    x, p = torch.randn(2, 3, dtype=F64), torch.rand(2, 3, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = losskit.kl_div(x, p)
        lnn.KLDivLoss()(x, p)
    torch.testing.assert_close(ours, _torch_kl(x, p))


def test_module_accepts_batchmean_and_rejects_bad_arguments():
    x = torch.log_softmax(torch.randn(4, 3, dtype=F64), 1)
    p = torch.softmax(torch.randn(4, 3, dtype=F64), 1)
    crit = lnn.KLDivLoss(reduction="batchmean", log_target=False)
    torch.testing.assert_close(crit(x, p), _torch_kl(x, p, reduction="batchmean"))
    assert "batchmean" in repr(crit)
    with pytest.raises(
        ValueError, match=r"'batch' is not a valid value for reduction.*'batchmean'"
    ):
        lnn.KLDivLoss(reduction="batch")
    with pytest.raises(TypeError, match=r"log_target must be a bool, got str"):
        lnn.KLDivLoss(log_target="True")
    with pytest.raises(ValueError, match=r"target size \(4, 1\).*input size \(4, 3\)"):
        crit(x, p[:, :1])  # torch would broadcast
    with pytest.raises(
        TypeError, match=r"target must be a floating-point tensor, got dtype torch.int64"
    ):
        losskit.kl_div(x, torch.ones(4, 3, dtype=torch.long))
