"""Every loss under ``torch.func``: ``grad``, per-sample ``vmap(grad)``, and for the losses with a
hand-written autograd Function also ``jacfwd`` (forward mode), ``hessian`` and ``torch.compile``.

The oracle is the loss's ordinary autograd gradient (checked against the NumPy reference by the
conformance suite), a loop over the samples for ``vmap``, and autograd's ``gradgradcheck``
(finite differences) for the second derivatives.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, jacfwd, vmap

import losskit
from registry_helpers import loss_params, samples_of

# torch's forward-mode AD loads its decompositions with torch.jit.script, which warns; vmap notes
# where it falls back to a loop for an op (a speed note, not an error).
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning"),
]

F64 = torch.float64
DIFFERENTIABLE = loss_params(where=lambda i: i.differentiable)
# Batch-all mining lists triplets with data-dependent shapes, which vmap cannot batch.
VMAPPABLE = loss_params(where=lambda i: i.differentiable and i.name != "triplet_batch_all")


def _first_sample_as_function(info):
    s = next(iter(samples_of(info, "samples"))).cast(F64)
    k = info.grad_args[0]

    def loss_of(a: torch.Tensor) -> torch.Tensor:
        args = list(s.args)
        args[k] = a
        return info.functional(*args, **s.kwargs).sum()

    return loss_of, s.args[k].detach().clone()


def _autograd_grad(fn, a: torch.Tensor) -> torch.Tensor:
    a = a.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(a), a, allow_unused=True)
    return torch.zeros_like(a) if g is None else g


@pytest.mark.parametrize("info", DIFFERENTIABLE)
def test_torch_func_grad_equals_the_autograd_gradient(info):
    fn, a = _first_sample_as_function(info)
    torch.testing.assert_close(grad(fn)(a), _autograd_grad(fn, a), equal_nan=True)


@pytest.mark.parametrize("info", VMAPPABLE)
def test_per_sample_gradients_with_vmap_equal_a_loop(info):
    fn, a = _first_sample_as_function(info)
    batch = torch.stack([a, a * 0.9 + 0.01, a.flip(0)])
    expected = torch.stack([_autograd_grad(fn, b) for b in batch])
    torch.testing.assert_close(vmap(grad(fn))(batch), expected, equal_nan=True)


def _binary_losses():
    torch.manual_seed(0)
    y = torch.rand(3, 4, dtype=F64)
    y[0] = (y[0] > 0.5).to(F64)  # hard labels too
    pw = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=F64)
    return {
        "bce_with_logits": lambda a: losskit.binary_cross_entropy_with_logits(a, y),
        "bce_with_logits_pos_weight": lambda a: losskit.binary_cross_entropy_with_logits(
            a, y, pos_weight=pw, reduction="sum"
        ),
        "sigmoid_focal": lambda a: losskit.sigmoid_focal_loss(a, y),
        "sigmoid_focal_gamma_0.5": lambda a: losskit.sigmoid_focal_loss(a, y, gamma=0.5),
        "binary_cross_entropy": lambda a: losskit.binary_cross_entropy(torch.sigmoid(a), y),
    }


@pytest.mark.parametrize("name", list(_binary_losses()))
def test_forward_mode_and_hessian_through_the_hand_written_functions(name):
    fn = _binary_losses()[name]
    x = (torch.randn(3, 4, dtype=F64) * 3).requires_grad_(True)
    # The double-backward of the Functions is right (finite differences) ...
    assert torch.autograd.gradgradcheck(fn, (x,))
    a = x.detach()
    first = _autograd_grad(fn, a)
    torch.testing.assert_close(jacfwd(fn)(a), first)
    # ... and torch.func's Hessian (forward over reverse) agrees with it.
    xg = a.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(xg), xg, create_graph=True)
    rows = [torch.autograd.grad(g.flatten()[i], xg, retain_graph=True)[0] for i in range(g.numel())]
    torch.testing.assert_close(hessian(fn)(a).reshape(12, 12), torch.stack(rows).reshape(12, 12))


def test_value_checks_are_skipped_only_where_vmap_hides_the_values():
    x = torch.randn(2, 5, 3)
    y = torch.rand(2, 5, 3)
    per_sample = vmap(losskit.sigmoid_focal_loss)(x, y)  # a target check inside vmap
    expected = torch.stack([losskit.sigmoid_focal_loss(x[i], y[i]) for i in range(2)])
    torch.testing.assert_close(per_sample, expected)
    y[1, 0, 0] = 2.0
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        losskit.sigmoid_focal_loss(x[1], y[1])  # outside vmap it is still checked
    # Under grad (no vmap) values are readable, and still checked.
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        grad(lambda a: losskit.sigmoid_focal_loss(a, y[1]))(x[1])


@pytest.mark.parametrize("name", list(_binary_losses()))
def test_torch_compile_traces_the_hand_written_functions(name):
    # aot_eager: dynamo and AOT autograd trace forward and backward, without a C++ compiler.
    fn = _binary_losses()[name]
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager")
    x = torch.randn(3, 4, dtype=F64)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = compiled(a), fn(b)
    got.backward()
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(a.grad, b.grad)
