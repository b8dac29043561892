"""Bad input found by an audit of the public API: each case once gave a raw RuntimeError, a silent
wrong answer or a value where torch raises. Device mismatches use the ``meta`` device (CI has no
GPU): a tensor argument on another device than the input must be a ``ValueError`` naming it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit import boxes, gan
from losskit.custom import elementwise_loss
from losskit.distributed import gather_embeddings, vocab_parallel_cross_entropy
from losskit.metric import PKSampler
from registry_helpers import loss_params, samples_of

F64 = torch.float64


def _tensor_slots(info) -> list[tuple[int | None, str | None]]:
    """(position, None) or (None, keyword) of each tensor argument of the loss's first sample."""
    sample = samples_of(info)[0]
    slots = [(i, None) for i, a in enumerate(sample.args) if torch.is_tensor(a)]
    return slots + [(None, k) for k, v in sample.kwargs.items() if torch.is_tensor(v)]


# ctc_loss, like torch's, takes its targets and lengths on any device (cuDNN wants them on the
# CPU); a GAN generator loss has a single tensor, with nothing to disagree with.
_SEVERAL_TENSORS = loss_params(
    lambda info: info.name != "ctc_loss" and len(_tensor_slots(info)) > 1
)


@pytest.mark.parametrize("info", _SEVERAL_TENSORS)
def test_a_tensor_argument_on_another_device_is_a_value_error_naming_it(info):
    sample = samples_of(info)[0]
    for index, key in _tensor_slots(info)[1:]:  # every tensor but the first, moved to 'meta'
        args, kwargs = list(sample.args), dict(sample.kwargs)
        if key is None:
            args[index] = args[index].to("meta")
        else:
            kwargs[key] = kwargs[key].to("meta")
        with pytest.raises(ValueError, match=r"is on meta but .* is on cpu"):
            info.functional(*args, **kwargs)


def test_linear_cross_entropy_weight_on_another_device_raises_instead_of_returning_garbage():
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="linear_weight is on meta but input is on cpu"):
        losskit.linear_cross_entropy(x, torch.randn(5, 3, device="meta"), t)
    with pytest.raises(ValueError, match="linear_bias is on meta"):
        losskit.linear_cross_entropy(
            x, torch.randn(5, 3), t, linear_bias=torch.zeros(5, device="meta")
        )


def test_binary_cross_entropy_target_outside_0_1_raises_like_torch():
    x = torch.full((3,), 0.5)
    for bad in (2.0, -1.0, math.nan):
        t = torch.tensor([0.0, 1.0, bad])
        with pytest.raises(RuntimeError):
            TF.binary_cross_entropy(x, t)  # the oracle: torch refuses it too
        with pytest.raises(ValueError, match="target should be between 0 and 1"):
            losskit.binary_cross_entropy(x, t)


def test_cross_entropy_with_z_loss_accepts_a_weight_of_another_floating_dtype():
    x, t = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    w = torch.rand(5, dtype=F64) + 0.5
    got = losskit.cross_entropy_with_z_loss(x, t, weight=w)
    torch.testing.assert_close(got, TF.cross_entropy(x, t, weight=w.float()))
    with pytest.raises(TypeError, match="return_z_loss must be a bool"):
        losskit.cross_entropy_with_z_loss(x, t, return_z_loss="yes")


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_zero_classes_with_every_target_ignored_is_torch_s_value(reduction, smoothing):
    t = torch.full((4,), -100)
    x = torch.randn(4, 0, requires_grad=True)
    got = losskit.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
    expected = TF.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
    torch.testing.assert_close(got, expected, equal_nan=True)
    got.sum().backward()
    assert x.grad.shape == (4, 0)
    # Without a process group, the vocab-parallel form is the same call.
    torch.testing.assert_close(
        vocab_parallel_cross_entropy(x.detach(), t, reduction=reduction),
        TF.cross_entropy(x.detach(), t, reduction=reduction),
        equal_nan=True,
    )


def test_distillation_with_a_nan_or_inf_teacher_row_is_nan_like_kl_div():
    s, t = torch.randn(3, 5, dtype=F64), torch.randn(3, 5, dtype=F64)
    for bad in (math.nan, math.inf):
        t[1, 2] = bad
        rows = losskit.distillation_kl_div(s, t, reduction="none")
        expected = TF.kl_div(
            TF.log_softmax(s, -1), TF.log_softmax(t, -1), log_target=True, reduction="none"
        ).sum(-1)
        torch.testing.assert_close(rows, expected, equal_nan=True)
        assert torch.isnan(rows[1]) and torch.isfinite(rows[[0, 2]]).all()


def test_custom_loss_formula_must_be_callable():
    for bad in (3, "abs"):
        with pytest.raises(TypeError, match="formula must be a function"):
            elementwise_loss(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: boxes.giou_loss(
            torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 2, 2]]), eps=math.inf
        ),
        lambda: boxes.focal_eiou_loss(
            torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.0, 0, 2, 2]]), gamma=math.inf
        ),
        lambda: gan.lsgan_discriminator_loss(torch.randn(3), torch.randn(3), a=math.inf),
        lambda: gan.loss_sensitive_critic_loss(torch.rand(3), torch.rand(3), 1.0, lam=math.inf),
    ],
)
def test_infinite_hyper_parameters_of_losses_torch_lacks_raise(call):
    with pytest.raises(ValueError, match="must be a finite number"):
        call()


def test_metric_helpers_reject_the_wrong_label_types():
    with pytest.raises(TypeError, match="labels must be a 1-D tensor, array or sequence"):
        PKSampler(None, 2, 2)
    with pytest.raises(TypeError, match="labels"):
        gather_embeddings(torch.randn(4, 3), torch.zeros(4))


def test_perceptual_loss_layer_weights_must_be_finite_and_non_negative():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3))
    for bad in (-1.0, math.inf):
        with pytest.raises(ValueError, match="layer_weights"):
            losskit.nn.PerceptualLoss(net, ["0"], layer_weights=[bad])


def test_multitask_losses_on_other_devices_than_each_other_or_the_strategy_raise():
    from losskit.multitask import SumWeighting, UncertaintyWeighting

    with pytest.raises(ValueError, match=r"losses\[1\] is on cpu but losses\[0\] is on meta"):
        SumWeighting(2)([torch.tensor(1.0, device="meta"), torch.tensor(2.0)])
    strategy = UncertaintyWeighting(["regression", "classification"])
    with pytest.raises(ValueError, match="strategy's log_vars is on cpu; move the strategy"):
        strategy(torch.tensor([1.0, 2.0], device="meta"))
    # On one device it is the plain formula: 0.5 e^0 L1 + 0 + e^0 L2 + 0.
    torch.testing.assert_close(strategy([torch.tensor(1.0), torch.tensor(2.0)]), torch.tensor(2.5))


def test_cross_entropy_probability_targets_refuse_an_ignore_index_like_torch():
    x, p = torch.randn(3, 4), torch.softmax(torch.randn(3, 4), 1)
    with pytest.raises(RuntimeError, match="ignore_index"):
        TF.cross_entropy(x, p, ignore_index=0)  # the oracle: torch refuses it
    with pytest.raises(ValueError, match=r"ignore_index is not supported.*got ignore_index=0"):
        losskit.cross_entropy(x, p, ignore_index=0)
    torch.testing.assert_close(losskit.cross_entropy(x, p), TF.cross_entropy(x, p))
