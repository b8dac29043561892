"""Equal weighting, DWA, RLW and the geometric-mean loss against hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losskit.multitask import (
    DynamicWeightAverage,
    EqualWeighting,
    GeometricMeanLoss,
    MeanWeighting,
    RandomLossWeighting,
    SumWeighting,
)


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny tensors: intra-op threads only add overhead, and much more on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tensors(values, **kw):
    return [torch.tensor(v, **kw) for v in values]


# --- equal weighting -----------------------------------------------------------------------------


def test_equal_weighting_sum_and_mean():
    losses = tensors([1.0, 2.0, 6.0])
    assert EqualWeighting(3)(losses).item() == 9.0
    assert SumWeighting(3)(losses).item() == 9.0
    assert EqualWeighting(3, mode="mean")(losses).item() == 3.0
    assert MeanWeighting(3)(losses).item() == 3.0
    assert EqualWeighting(3).weights.tolist() == [1.0, 1.0, 1.0]
    assert MeanWeighting(3).weights.tolist() == pytest.approx([1 / 3] * 3)
    assert SumWeighting(2).mode == "sum" and isinstance(SumWeighting(2), EqualWeighting)
    with pytest.raises(ValueError, match=r"mode must be one of.*'avg'"):
        EqualWeighting(3, mode="avg")


# --- DWA -----------------------------------------------------------------------------------------


def hand_dwa(prev, prev2, temperature):
    r = [a / b for a, b in zip(prev, prev2, strict=True)]
    e = [math.exp(x / temperature) for x in r]
    return [len(r) * x / sum(e) for x in e]


def test_dwa_epoch_mode_reproduces_hand_computed_weights():
    T = 3
    dwa = DynamicWeightAverage(T, temperature=2.0)
    epochs = [  # per epoch, the per-batch losses of each task
        [[3.0, 2.0, 1.0], [1.0, 2.0, 1.0]],
        [[2.0, 1.0, 1.0], [2.0, 1.5, 0.8], [1.1, 1.0, 0.9]],
        [[0.5, 1.2, 0.9]],
        [[0.4, 1.0, 1.0], [0.2, 1.0, 0.6]],
    ]
    means = [[sum(b[t] for b in ep) / len(ep) for t in range(T)] for ep in epochs]
    expected_per_epoch = [
        [1.0] * T,  # epoch 1: no history
        [1.0] * T,  # epoch 2: one period only
        hand_dwa(means[1], means[0], 2.0),
        hand_dwa(means[2], means[1], 2.0),
    ]
    for ep, want in zip(epochs, expected_per_epoch, strict=True):
        assert dwa.weights.tolist() == pytest.approx(want, rel=1e-5)
        for batch in ep:
            losses = tensors(batch, requires_grad=True)
            total = dwa(losses)
            # constant within the epoch; total = sum w·L; gradient to L_t is w_t
            assert total.item() == pytest.approx(
                sum(w * v for w, v in zip(want, batch, strict=True)), rel=1e-5
            )
            total.backward()
            assert [x.grad.item() for x in losses] == pytest.approx(want, rel=1e-5)
        dwa.end_epoch()
    final = hand_dwa(means[3], means[2], 2.0)
    assert dwa.weights.tolist() == pytest.approx(final, rel=1e-5)
    assert sum(final) == pytest.approx(T)
    # the task whose loss fell least (task 2: 0.9 -> 0.8, ratio 0.89) gets the most weight
    assert dwa.weights.argmax().item() == 2
    assert dwa.weights.argmin().item() == 0  # task 0: 0.5 -> 0.3, ratio 0.6


def test_dwa_step_mode_uses_the_previous_two_calls_and_temperature():
    dwa = DynamicWeightAverage(2, temperature=0.5, period="step")
    seq = [[4.0, 1.0], [2.0, 1.0], [1.0, 0.9], [0.9, 0.9]]
    used = []
    for k, batch in enumerate(seq):
        used.append(dwa.weights.tolist())
        dwa(tensors(batch))
        if k >= 1:
            assert dwa.weights.tolist() == pytest.approx(
                hand_dwa(seq[k], seq[k - 1], 0.5), rel=1e-5
            )
    assert used[0] == used[1] == [1.0, 1.0]
    assert used[2] == pytest.approx(hand_dwa([2.0, 1.0], [4.0, 1.0], 0.5), rel=1e-5)
    assert int(dwa.num_periods) == 4
    with pytest.raises(RuntimeError, match="no losses were recorded"):
        dwa.end_epoch()


def test_dwa_large_temperature_tends_to_equal_weights():
    dwa = DynamicWeightAverage(2, temperature=1e6, period="step")
    for batch in ([1.0, 1.0], [0.1, 1.0], [0.01, 1.0]):
        dwa(tensors(batch))
    assert dwa.weights.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_dwa_eval_mode_does_not_record():
    dwa = DynamicWeightAverage(2)
    dwa(tensors([1.0, 2.0]))
    dwa.eval()
    dwa(tensors([100.0, 100.0]))
    dwa.train()
    dwa.end_epoch()
    assert dwa.loss_history[0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_dwa_rejects_non_positive_losses(bad):
    with pytest.raises(ValueError, match=rf"losses\[1\] is {bad}; DynamicWeightAverage needs"):
        DynamicWeightAverage(2)(tensors([1.0, bad]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, r"temperature must be in \(0, inf\), got 0.0"),
        ({"temperature": -2.0}, ValueError, "temperature must be in"),
        ({"temperature": math.inf}, ValueError, "temperature must be finite"),
        ({"temperature": "2"}, TypeError, "temperature must be a real number, got str"),
        ({"period": "batch"}, ValueError, "period must be one of.*'batch'"),
    ],
)
def test_dwa_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynamicWeightAverage(2, **kwargs)


# --- RLW -----------------------------------------------------------------------------------------


def test_rlw_weights_are_a_softmax_of_standard_normal_draws():
    T = 4
    rlw = RandomLossWeighting(T, generator=torch.Generator().manual_seed(123))
    shadow = torch.Generator().manual_seed(123)  # replays the same draws
    values = [1.0, 2.0, 3.0, 4.0]
    seen = []
    for _ in range(5):
        total = rlw(tensors(values))
        z = torch.randn(T, generator=shadow).double().numpy()
        want = np.exp(z) / np.exp(z).sum()
        w = rlw.weights
        assert w.tolist() == pytest.approx(want.tolist(), rel=1e-5)
        assert w.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert (w > 0).all()
        assert total.item() == pytest.approx(float(want @ np.array(values)), rel=1e-5)
        seen.append(w.tolist())
    assert seen[0] != seen[1]  # fresh weights at every call


def test_rlw_is_reproducible_with_a_seeded_generator_and_mean_in_eval():
    a = RandomLossWeighting(3, generator=torch.Generator().manual_seed(7))
    b = RandomLossWeighting(3, generator=torch.Generator().manual_seed(7))
    losses = tensors([1.0, 5.0, 2.0])
    for _ in range(3):
        assert a(losses).item() == b(losses).item()
        assert torch.equal(a.weights, b.weights)
    assert RandomLossWeighting(3).weights.tolist() == pytest.approx([1 / 3] * 3)  # before a call
    a.eval()
    last = a.weights
    assert a(losses).item() == pytest.approx(8.0 / 3)  # the expectation 1/T: the mean
    assert torch.equal(a.weights, last)  # eval calls do not draw
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        RandomLossWeighting(3, generator=0)


# --- geometric mean ------------------------------------------------------------------------------


def test_geometric_mean_value_and_gradient():
    values = np.array([0.5, 2.0, 8.0, 3.0])
    losses = tensors(values.tolist(), dtype=torch.float64, requires_grad=True)
    gm = GeometricMeanLoss(4)
    total = gm(losses)
    want = float(np.exp(np.mean(np.log(values))))
    assert want == pytest.approx(float(np.prod(values) ** 0.25))
    assert total.item() == pytest.approx(want, rel=1e-12)
    total.backward()
    grad = want / (len(values) * values)  # d/dL_t (prod L)^(1/T) = G / (T L_t)
    assert [x.grad.item() for x in losses] == pytest.approx(grad.tolist(), rel=1e-12)
    # weights are a float32 buffer
    assert gm.weights.tolist() == pytest.approx(grad.tolist(), rel=1e-6)
    assert float((gm.weights.double() * torch.tensor(values)).sum()) == pytest.approx(
        want, rel=1e-6
    )


def test_geometric_mean_is_stable_where_the_product_overflows():
    values = [1e30, 1e30, 1e-20]
    losses = tensors(values, dtype=torch.float32)
    assert torch.isinf(torch.stack(losses).prod())  # the naive product overflows in float32
    total = GeometricMeanLoss(3)(losses)
    assert total.item() == pytest.approx(1e40 ** (1 / 3), rel=1e-4)
    # gradient direction is invariant to rescaling one task's loss
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    GeometricMeanLoss(2)([x[0] * 1000, x[1]]).backward()
    g_scaled = x.grad.clone()
    x.grad = None
    GeometricMeanLoss(2)([x[0], x[1]]).backward()
    assert torch.allclose(g_scaled / g_scaled.norm(), x.grad / x.grad.norm())


@pytest.mark.parametrize("bad", [0.0, -0.5])
def test_geometric_mean_rejects_non_positive_losses(bad):
    with pytest.raises(ValueError, match=rf"losses\[0\] is {bad}; GeometricMeanLoss needs .*> 0"):
        GeometricMeanLoss(2)(tensors([bad, 1.0]))
