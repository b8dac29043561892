"""The interface every multi-task strategy shares: inputs, errors, training loop, state_dict, docs."""

from __future__ import annotations

import doctest
import importlib
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losskit.multitask as mt
from losskit.multitask import (
    DynamicTaskPrioritization,
    DynamicWeightAverage,
    EqualWeighting,
    GeometricMeanLoss,
    GradNorm,
    MeanWeighting,
    MultiTaskWeighting,
    RandomLossWeighting,
    SumWeighting,
    UncertaintyWeighting,
)


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny tensors: intra-op threads only add overhead, and much more on a busy shared CPU.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Each factory takes the shared parameters (only GradNorm needs them).
FACTORIES = {
    "sum": lambda shared: SumWeighting(2),
    "mean": lambda shared: MeanWeighting(2),
    "uncertainty": lambda shared: UncertaintyWeighting(["regression", "classification"]),
    "uncertainty-simplified": lambda shared: UncertaintyWeighting(
        ["regression", "classification"], form="simplified"
    ),
    "dtp": lambda shared: DynamicTaskPrioritization(2, gamma=[1.0, 2.0], warmup_steps=1),
    "dwa-epoch": lambda shared: DynamicWeightAverage(2),
    "dwa-step": lambda shared: DynamicWeightAverage(2, period="step"),
    "gradnorm": lambda shared: GradNorm(2, shared, alpha=1.5),
    "rlw": lambda shared: RandomLossWeighting(2, generator=torch.Generator().manual_seed(0)),
    "geometric": lambda shared: GeometricMeanLoss(2),
}
NAMES = list(FACTORIES)


def test_every_public_name_is_exported_and_is_a_strategy():
    assert sorted(mt.__all__) == mt.__all__
    for name in mt.__all__:
        obj = getattr(mt, name)
        if isinstance(obj, type):
            assert issubclass(obj, MultiTaskWeighting)
            assert issubclass(obj, nn.Module)


def losses_of(p):
    return [(p**2).sum(), (p - 1).abs().sum() + 0.5]


def shared_and_losses(dtype=torch.float32):
    """A shared parameter and two positive losses that depend on it."""
    p = torch.tensor([0.5, -1.0, 2.0], dtype=dtype, requires_grad=True)
    return p, losses_of(p)


# --- inputs and outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_a_detached_vector_and_dict_inputs_name_the_tasks(name):
    p, (a, b) = shared_and_losses()
    s = FACTORIES[name]([p])
    total = s({"depth": a, "seg": b})
    assert s.task_names == ("depth", "seg")
    assert total.dim() == 0 and torch.isfinite(total)
    w = s.weights
    assert w.shape == (2,) and not w.requires_grad and w.is_floating_point()
    assert list(s.weights_dict()) == ["depth", "seg"]
    # same keys in another order are matched by name; other keys are refused
    a, b = losses_of(p)
    s({"seg": b, "depth": a})
    with pytest.raises(ValueError, match=r"keys must be the task names \['depth', 'seg'\]"):
        s({"depth": a, "sec": b})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_total_has_the_losses_dtype(name, dtype):
    p, losses = shared_and_losses(dtype)
    total = FACTORIES[name]([p])(losses)
    assert total.dtype == dtype
    total.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_1d_tensor_of_losses_is_accepted(name):
    p, losses = shared_and_losses()
    s = FACTORIES[name]([p])
    assert torch.isfinite(s(torch.stack(losses)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("make_losses", "error", "match"),
    [
        (lambda a, b: [a], ValueError, r"losses must hold one value per task \(2 tasks\), got 1"),
        (lambda a, b: [a, b, a], ValueError, r"\(2 tasks\), got 3"),
        (
            lambda a, b: [a, b.expand(4)],
            ValueError,
            r"losses\[1\] must be a scalar \(0-D\).*\(4,\)",
        ),
        (lambda a, b: [1.0, b], TypeError, r"losses\[0\] must be a torch.Tensor, got float"),
        (lambda a, b: [a, torch.tensor(1)], TypeError, r"losses\[1\] must be a floating-point"),
        (lambda a, b: [a, b * math.nan], ValueError, r"losses\[1\] is nan; every task loss must"),
        (lambda a, b: [a * math.inf, b], ValueError, r"losses\[0\] is inf; every task loss must"),
        (lambda a, b: a, ValueError, r"1-D with one entry per task \(2\), got shape \(\)"),
        (lambda a, b: "ab", TypeError, "losses must be a sequence or dict of 2 scalar tensors"),
        (lambda a, b: {"a": a, 3: b}, TypeError, "keys must be task names"),
    ],
)
def test_bad_losses_raise_a_clear_error(name, make_losses, error, match):
    p, (a, b) = shared_and_losses()
    s = FACTORIES[name]([p])
    before = {k: v.clone() for k, v in s.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(error, match=match):
        s(make_losses(a, b))
    after = {k: v for k, v in s.state_dict().items() if isinstance(v, torch.Tensor)}
    assert all(torch.equal(before[k], after[k]) for k in before)  # a refused call changes nothing


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SumWeighting(0), ValueError, "num_tasks must be >= 1, got 0"),
        (lambda: MeanWeighting(2.0), TypeError, "num_tasks must be an int, got float"),
        (lambda: EqualWeighting(2, task_names=["a"]), ValueError, "one name per task"),
        (lambda: EqualWeighting(2, task_names=["a", "a"]), ValueError, "distinct"),
        (lambda: EqualWeighting(2, task_names="ab"), TypeError, "task_names must be a sequence"),
    ],
)
def test_bad_common_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_loading_a_state_dict_for_another_number_of_tasks_fails():
    with pytest.raises(ValueError, match="state_dict is for 3 tasks"):
        EqualWeighting(2).load_state_dict(EqualWeighting(3).state_dict())


# --- plain training loop and state_dict round trip -----------------------------------------------


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.depth = nn.Linear(16, 1)
        self.seg = nn.Linear(16, 3)

    def forward(self, x):
        h = self.trunk(x)
        return self.depth(h).squeeze(1), self.seg(h)


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    depth = x[:, 0] * 2 - x[:, 1]
    seg = (x[:, 2] > 0).long() + (x[:, 3] > 0.7).long()
    return x, depth, seg


def train(name, steps=60):
    torch.manual_seed(0)
    model = TwoHeads()
    strategy = FACTORIES[name](list(model.trunk[2].parameters()))
    groups = [{"params": list(model.parameters())}]
    if list(strategy.parameters()):
        groups.append({"params": list(strategy.parameters()), "lr": 0.02})
    opt = torch.optim.Adam(groups, lr=0.01)
    x, depth, seg = data()
    raw = []
    for step in range(steps):
        pred, logits = model(x)
        losses = {"depth": F.mse_loss(pred, depth), "seg": F.cross_entropy(logits, seg)}
        raw.append(sum(v.item() for v in losses.values()))
        total = strategy(losses)
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        if isinstance(strategy, DynamicTaskPrioritization):
            with torch.no_grad():
                acc = (logits.argmax(1) == seg).float().mean()
                strategy.update_kpis({"depth": torch.exp(-losses["depth"].detach()), "seg": acc})
        if (
            isinstance(strategy, DynamicWeightAverage)
            and strategy.period == "epoch"
            and step % 5 == 4
        ):
            strategy.end_epoch()
    return model, strategy, raw


@pytest.mark.parametrize("name", NAMES)
def test_plain_training_loop_decreases_the_task_losses(name):
    _, strategy, raw = train(name)
    assert all(math.isfinite(v) for v in raw)
    assert raw[-1] < 0.6 * raw[0]
    assert torch.isfinite(strategy.weights).all() and (strategy.weights > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_into_a_fresh_instance(name):
    model, strategy, _ = train(name, steps=23)  # DWA: mid-epoch, with running sums
    buf = io.BytesIO()
    torch.save(strategy.state_dict(), buf)
    buf.seek(0)
    fresh = FACTORIES[name](list(TwoHeads().trunk[2].parameters()))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.task_names == strategy.task_names == ("depth", "seg")
    assert torch.equal(fresh.weights, strategy.weights)
    saved, loaded = strategy.state_dict(), fresh.state_dict()
    assert saved.keys() == loaded.keys()
    for k, v in saved.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, loaded[k]), k
        else:
            assert v == loaded[k], k
    # the restored statistics give the same next total (RLW draws from its own generator)
    if name != "rlw":
        x, depth, seg = data()
        pred, logits = model(x)
        losses = {"depth": F.mse_loss(pred, depth), "seg": F.cross_entropy(logits, seg)}
        if name == "gradnorm":
            strategy.eval()
            fresh.eval()
        assert fresh(losses).item() == pytest.approx(strategy(losses).item(), rel=1e-6)


def test_what_each_strategy_keeps_in_its_state_dict():
    p, _ = shared_and_losses()
    keys = {n: set(FACTORIES[n]([p]).state_dict()) - {"_extra_state"} for n in NAMES}
    assert keys["sum"] == keys["mean"] == keys["geometric"] - {"last_weights"} == set()
    assert keys["uncertainty"] == {"log_vars"}
    assert keys["dtp"] == {"kpi_ema", "num_updates"}
    assert keys["dwa-epoch"] == {"loss_history", "num_periods", "running_sum", "running_count"}
    assert keys["gradnorm"] == {"task_weights", "initial_losses", "num_steps"}
    assert keys["rlw"] == {"last_weights"}
    learned = {n for n in NAMES if list(FACTORIES[n]([p]).parameters())}
    assert learned == {"uncertainty", "uncertainty-simplified", "gradnorm"}


# --- documentation -------------------------------------------------------------------------------

MODULES = ["base", "equal", "uncertainty", "dtp", "dwa", "gradnorm", "rlw", "geometric"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"losskit.multitask.{module}")
    result = doctest.testmod(mod, extraglobs={"torch": torch, "nn": nn}, verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize(
    "cls",
    [
        UncertaintyWeighting,
        DynamicTaskPrioritization,
        DynamicWeightAverage,
        GradNorm,
        RandomLossWeighting,
        GeometricMeanLoss,
        EqualWeighting,
    ],
)
def test_docstrings_have_formula_args_edge_cases_example_and_reference(cls):
    doc = cls.__doc__
    assert doc.splitlines()[0].strip().endswith(".")
    for section in ("Args:", "Example:", ".. math::"):
        assert section in doc, section
    if cls is not EqualWeighting:
        assert "Reference:" in doc and "Edge behaviour" in doc


README_EXAMPLE = """
import torch
import torch.nn.functional as F
from torch import nn
from losskit.multitask import UncertaintyWeighting

trunk = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
depth_head, seg_head = nn.Linear(32, 1), nn.Linear(32, 5)
weighting = UncertaintyWeighting({"depth": "regression", "seg": "classification"})
params = [*trunk.parameters(), *depth_head.parameters(), *seg_head.parameters()]
opt = torch.optim.Adam([*params, *weighting.parameters()], lr=1e-2)  # log-variances are learned too

x, depth, seg = torch.randn(64, 8), torch.randn(64), torch.randint(5, (64,))
for step in range(200):
    h = trunk(x)
    losses = {"depth": F.mse_loss(depth_head(h).squeeze(1), depth),
              "seg": F.cross_entropy(seg_head(h), seg)}
    total = weighting(losses)  # 0.5·exp(-s)·L_depth + 0.5·s_depth + exp(-s)·L_seg + 0.5·s_seg
    opt.zero_grad()
    total.backward()
    opt.step()
print(weighting.weights_dict())  # learned multipliers, → 1/(2·L_t) as the log-variances settle
"""


def test_readme_example_runs(capsys):
    namespace: dict = {}
    exec(compile(README_EXAMPLE, "README", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'depth'" in out and "'seg'" in out
    w = namespace["weighting"]
    assert torch.isfinite(w.log_vars).all() and not torch.equal(w.log_vars, torch.zeros(2))
