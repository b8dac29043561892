"""UncertaintyWeighting (Kendall et al. 2018): the values, the gradients and the optimum of each form."""

from __future__ import annotations

import math

import pytest
import torch

from losskit.multitask import UncertaintyWeighting


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny tensors: intra-op threads only add overhead, and much more on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TYPES = ["regression", "classification", "regression", "classification"]
LOSSES = [0.3, 2.0, 5.0, 0.05]


def expected_optimum(form: str, task_type: str, loss: float) -> float:
    # d/ds [a·exp(-s)·L + b·s] = 0  <=>  s* = log(a·L / b), derived by hand per form.
    if form == "simplified":
        return math.log(loss)  # exp(-s)·L + s
    if task_type == "regression":
        return math.log(loss)  # 0.5·exp(-s)·L + 0.5·s
    return math.log(2.0 * loss)  # exp(-s)·L + 0.5·s


@pytest.mark.parametrize("form", ["kendall", "simplified"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizing_log_vars_reaches_the_closed_form_optimum(form, optimizer):
    uw = UncertaintyWeighting(TYPES, form=form)
    if optimizer == "sgd":
        opt = torch.optim.SGD(uw.parameters(), lr=0.2)
    else:
        opt = torch.optim.Adam(uw.parameters(), lr=0.05)
    losses = [torch.tensor(v, dtype=torch.float64) for v in LOSSES]
    for _ in range(400):
        opt.zero_grad()
        uw(losses).backward()
        opt.step()
    want = [expected_optimum(form, t, v) for t, v in zip(TYPES, LOSSES, strict=True)]
    assert uw.log_vars.detach().tolist() == pytest.approx(want, abs=2e-4)
    # At the optimum every weighted loss w_t·L_t is 1/2 (Kendall) or 1 (simplified).
    weighted = (uw.weights.double() * torch.tensor(LOSSES, dtype=torch.float64)).tolist()
    assert weighted == pytest.approx([0.5 if form == "kendall" else 1.0] * 4, abs=1e-3)


def test_value_gradients_and_weights_match_the_formula():
    s0 = [0.4, -0.7, 1.1]
    types = ["regression", "classification", "classification"]
    uw = UncertaintyWeighting(types, init_log_vars=s0)
    values = (0.9, 1.7, 0.2)
    losses = [torch.tensor(v, requires_grad=True) for v in values]
    total = uw(losses)
    a = [0.5, 1.0, 1.0]
    want = sum(ai * math.exp(-si) * li + 0.5 * si for ai, si, li in zip(a, s0, values, strict=True))
    assert total.item() == pytest.approx(want, rel=1e-6)
    total.backward()
    weights = [ai * math.exp(-si) for ai, si in zip(a, s0, strict=True)]
    assert [float(li.grad) for li in losses] == pytest.approx(weights, rel=1e-6)
    assert uw.weights.tolist() == pytest.approx(weights, rel=1e-6)
    assert not uw.weights.requires_grad
    # d total / d s_t = b - a·exp(-s)·L
    grad_s = [0.5 - w * li for w, li in zip(weights, values, strict=True)]
    assert uw.log_vars.grad.tolist() == pytest.approx(grad_s, rel=1e-5)


def test_simplified_form_is_twice_the_kendall_regression_term():
    L = [torch.tensor(0.8), torch.tensor(2.5)]
    kendall = UncertaintyWeighting(["regression", "regression"], init_log_vars=[0.3, -0.2])
    simplified = UncertaintyWeighting(
        ["regression", "classification"], form="simplified", init_log_vars=[0.3, -0.2]
    )
    assert simplified(L).item() == pytest.approx(2 * kendall(L).item(), rel=1e-6)
    # the simplified form ignores the task type
    assert simplified.weights.tolist() == pytest.approx([math.exp(-0.3), math.exp(0.2)], rel=1e-6)


def test_log_vars_are_parameters_in_the_state_dict_and_dict_types_name_the_tasks():
    uw = UncertaintyWeighting({"depth": "regression", "seg": "classification"})
    assert [n for n, _ in uw.named_parameters()] == ["log_vars"]
    assert set(uw.state_dict()) == {"log_vars", "_extra_state"}
    assert uw.task_names == ("depth", "seg")
    # dict losses are matched by name, in any order
    total = uw({"seg": torch.tensor(1.0), "depth": torch.tensor(3.0)})
    assert total.item() == pytest.approx(0.5 * 3.0 + 1.0)
    with pytest.raises(ValueError, match=r"missing \['seg'\]"):
        uw({"depth": torch.tensor(1.0), "sag": torch.tensor(1.0)})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task_types": ["regression", "detection"]}, ValueError, r"task_types\[1\].*'detection'"),
        ({"task_types": {"a": "regresion"}}, ValueError, r"task_types\['a'\].*'regresion'"),
        ({"task_types": []}, ValueError, "at least one task"),
        ({"task_types": "regression"}, TypeError, "task_types must be a sequence"),
        ({"task_types": ["regression"], "form": "kendal"}, ValueError, "form.*'kendal'"),
        ({"task_types": ["regression"] * 2, "init_log_vars": [0.0]}, ValueError, "init_log_vars"),
        ({"task_types": ["regression"], "init_log_vars": math.nan}, ValueError, "init_log_vars"),
        ({"task_types": ["regression"], "init_log_vars": "0"}, TypeError, "init_log_vars"),
    ],
)
def test_bad_hyper_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        UncertaintyWeighting(**kwargs)
