"""DynamicTaskPrioritization (Guo et al. 2018): weights from hand arithmetic, edge cases, focal pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit.multitask import DynamicTaskPrioritization


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny tensors: intra-op threads only add overhead, and much more on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hand_weights(kpi_seq, gamma, alpha, eps=1e-6, warmup=0):
    """Plain-Python EMA and focal weight, independent of the implementation."""
    ema = None
    for kpis in kpi_seq:
        ema = (
            list(kpis)
            if ema is None
            else [alpha * k + (1 - alpha) * e for k, e in zip(kpis, ema, strict=True)]
        )
    n = len(kpi_seq[0]) if kpi_seq else len(gamma)
    if len(kpi_seq) <= warmup:
        return [1.0] * n
    out = []
    for e, g in zip(ema, gamma, strict=True):
        k = min(max(e, eps), 1 - eps)
        out.append(-((1 - k) ** g) * math.log(k))
    return out


def test_weights_follow_the_ema_and_the_focal_formula():
    dtp = DynamicTaskPrioritization(3, gamma=2.0, alpha=0.3)
    seq = [[0.2, 0.5, 0.9], [0.4, 0.5, 0.95], [0.6, 0.3, 0.99]]
    for i in range(len(seq)):
        w = dtp.update_kpis(seq[i])
        want = hand_weights(seq[: i + 1], [2.0] * 3, 0.3)
        assert w.tolist() == pytest.approx(want, rel=1e-5)
    # one step by hand: kbar_0 = 0.3·0.6 + 0.7·(0.3·0.4 + 0.7·0.2) = 0.362
    assert dtp.kpis[0].item() == pytest.approx(0.362, rel=1e-6)
    assert dtp.weights[0].item() == pytest.approx(-((1 - 0.362) ** 2) * math.log(0.362), rel=1e-5)
    # the total is the weighted sum, the weights carry no gradient
    losses = [torch.tensor(v, requires_grad=True) for v in (1.0, 2.0, 3.0)]
    total = dtp(losses)
    assert total.item() == pytest.approx(
        sum(w * v for w, v in zip(want, (1, 2, 3), strict=True)), rel=1e-5
    )
    total.backward()
    assert [float(x.grad) for x in losses] == pytest.approx(want, rel=1e-5)
    assert list(dtp.parameters()) == []


def test_per_task_gamma_and_first_update_initialises_the_average():
    dtp = DynamicTaskPrioritization(3, gamma=[0.0, 1.0, 3.5], alpha=0.5)
    w = dtp.update_kpis([0.25, 0.25, 0.25])
    assert dtp.kpis.tolist() == pytest.approx([0.25] * 3)  # not 0.5·0.25 (no zero start)
    log = math.log(0.25)
    assert w.tolist() == pytest.approx([-log, -0.75 * log, -(0.75**3.5) * log], rel=1e-5)


def test_clamping_at_zero_and_one():
    eps = 1e-3
    dtp = DynamicTaskPrioritization(2, gamma=2.0, alpha=1.0, eps=eps)
    w = dtp.update_kpis([0.0, 1.0])
    # kbar = 0 -> -(1-eps)^2 log(eps) (finite, ~6.9); kbar = 1 -> -(eps)^2 log(1-eps) (tiny, > 0)
    assert w[0].item() == pytest.approx(-((1 - eps) ** 2) * math.log(eps), rel=1e-5)
    assert w[1].item() == pytest.approx(-(eps**2) * math.log(1 - eps), rel=1e-3)
    assert w[1].item() > 0
    assert torch.isfinite(w).all()


def test_warmup_keeps_weights_at_one_while_the_ema_warms_up():
    dtp = DynamicTaskPrioritization(2, gamma=1.0, alpha=0.5, warmup_steps=2)
    assert dtp.weights.tolist() == [1.0, 1.0]  # before any KPI
    seq = [[0.1, 0.9], [0.3, 0.7], [0.5, 0.5]]
    assert dtp.update_kpis(seq[0]).tolist() == [1.0, 1.0]
    assert dtp.update_kpis(seq[1]).tolist() == [1.0, 1.0]
    w = dtp.update_kpis(seq[2])  # third update: warm-up over, EMA includes the warm-up KPIs
    assert w.tolist() == pytest.approx(hand_weights(seq, [1.0, 1.0], 0.5, warmup=2), rel=1e-5)
    assert dtp.kpis.tolist() == pytest.approx([0.5 * 0.5 + 0.5 * 0.2, 0.5 * 0.5 + 0.5 * 0.8])


@given(
    seq=st.lists(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), min_size=1, max_size=6),
    alpha=st.floats(0.01, 1.0),
    gamma=st.lists(st.floats(0.0, 5.0), min_size=3, max_size=3),
    warmup=st.integers(0, 3),
)
def test_weights_match_hand_arithmetic_for_random_kpi_sequences(seq, alpha, gamma, warmup):
    dtp = DynamicTaskPrioritization(3, gamma=gamma, alpha=alpha, eps=1e-4, warmup_steps=warmup)
    for kpis in seq:
        w = dtp.update_kpis(kpis)
    want = hand_weights(seq, gamma, alpha, eps=1e-4, warmup=warmup)
    assert w.tolist() == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_kpis_as_dict_tensor_and_numpy():
    dtp = DynamicTaskPrioritization(2, alpha=1.0)
    dtp.update_kpis({"seg": 0.5, "depth": torch.tensor(0.8)})
    assert dtp.task_names == ("seg", "depth")
    assert dtp.kpis.tolist() == pytest.approx([0.5, 0.8])
    dtp.update_kpis(torch.tensor([0.6, 0.7]))
    dtp.update_kpis([np.float32(0.4), np.float64(0.3)])
    assert dtp.kpis.tolist() == pytest.approx([0.4, 0.3])
    assert dtp.weights_dict() == pytest.approx(
        {"seg": -(0.6**2) * math.log(0.4), "depth": -(0.7**2) * math.log(0.3)}, rel=1e-5
    )


@pytest.mark.parametrize(
    ("kpis", "error", "match"),
    [
        ([0.5, 1.2], ValueError, r"kpis\[1\] must be a KPI in \[0, 1\], got 1.2"),
        ([-0.1, 0.5], ValueError, r"kpis\[0\].*-0.1"),
        ([math.nan, 0.5], ValueError, r"kpis\[0\].*nan"),
        ([0.5], ValueError, r"one value per task \(2 tasks\), got 1"),
        (torch.tensor([0.5, 0.5, 0.5]), ValueError, "got 3"),
        ([0.5, "0.5"], TypeError, r"kpis\[1\] must be a real number, got str"),
        ([0.5, True], TypeError, r"kpis\[1\]"),
        ([0.5, torch.tensor([0.5])], ValueError, r"kpis\[1\].*0-D"),
        (0.5, TypeError, "kpis must be a sequence or dict"),
    ],
)
def test_bad_kpis(kpis, error, match):
    dtp = DynamicTaskPrioritization(2)
    with pytest.raises(error, match=match):
        dtp.update_kpis(kpis)
    assert int(dtp.num_updates) == 0  # a rejected update changes nothing


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -1.0}, ValueError, "gamma must be >= 0, got -1.0"),
        ({"gamma": [1.0, -0.5]}, ValueError, r"gamma\[1\] must be >= 0"),
        ({"gamma": [1.0, 2.0, 3.0]}, ValueError, "gamma must be a number or hold one value"),
        ({"gamma": math.inf}, ValueError, "gamma must be finite"),
        ({"alpha": 0.0}, ValueError, r"alpha must be in \(0, 1\], got 0.0"),
        ({"alpha": 1.5}, ValueError, r"alpha must be in \(0, 1\], got 1.5"),
        ({"eps": 0.0}, ValueError, "eps must be in"),
        ({"eps": 0.5}, ValueError, "eps must be in"),
        ({"warmup_steps": -1}, ValueError, "warmup_steps must be >= 0, got -1"),
        ({"warmup_steps": 1.0}, TypeError, "warmup_steps must be an int"),
    ],
)
def test_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        DynamicTaskPrioritization(2, **kwargs)


# --- combined with focal loss, as in the paper (example-level + task-level prioritisation) ------


def test_dtp_with_focal_loss_prioritises_the_harder_task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    easy = (x[:, 0] > 0).long()  # linearly separable: learned quickly
    hard = (x[:, 1] * x[:, 2] > 0).long() + (x[:, 3] > 0.5).long()  # 3 classes, nonlinear
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU())
    heads = torch.nn.ModuleList([torch.nn.Linear(32, 2), torch.nn.Linear(32, 3)])
    dtp = DynamicTaskPrioritization(2, gamma=[1.0, 2.0], alpha=0.2, warmup_steps=2)
    opt = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=0.02)
    targets = (easy, hard)
    for _ in range(40):
        h = trunk(x)
        logits = [head(h) for head in heads]
        losses = [losskit.softmax_focal_loss(z, t) for z, t in zip(logits, targets, strict=True)]
        total = dtp(losses)
        # the total is sum_t w_t · FL_t with the weights fixed at the last KPI update
        w = dtp.weights
        assert total.item() == pytest.approx((w[0] * losses[0] + w[1] * losses[1]).item(), rel=1e-5)
        opt.zero_grad()
        total.backward()
        opt.step()
        with torch.no_grad():
            acc = [
                float((z.argmax(1) == t).float().mean())
                for z, t in zip(logits, targets, strict=True)
            ]
        dtp.update_kpis(acc)
    kbar = dtp.kpis.tolist()
    assert kbar[0] > kbar[1]  # the easy task has the higher smoothed accuracy ...
    assert dtp.weights[1] > dtp.weights[0]  # ... so the hard task weighs more
    want = [
        -((1 - kbar[0]) ** 1.0) * math.log(kbar[0]),
        -((1 - kbar[1]) ** 2.0) * math.log(kbar[1]),
    ]
    assert dtp.weights.tolist() == pytest.approx(want, rel=1e-5)
