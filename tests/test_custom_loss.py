"""The custom-loss template: a user loss (log-cosh) defined here goes through the generic suite.

The loss is registered by a fixture and unregistered in its teardown, so it never leaks into the
parameter lists of other test modules (they are built when those modules are imported) nor into
the registry seen by later tests. The checks are the generic suite's own test functions, called
with this loss's entry.
"""

from __future__ import annotations

import inspect
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
import test_conformance as conformance
from losskit import _registry
from losskit.conformance import check_loss
from losskit.custom import ElementwiseLoss, default_samples, elementwise_loss
from registry_helpers import FLOATS, HALVES

F64 = torch.float64


@elementwise_loss(bounds={"scale": "(0, inf)"})
def log_cosh_loss(input, target, scale: float = 1.0):
    """log cosh((x - y) / scale), written stably as |d| + softplus(-2|d|) - log 2."""
    d = ((input - target) / scale).abs()
    return d + TF.softplus(-2.0 * d) - math.log(2.0)


LogCoshLoss = log_cosh_loss.module  # module-level name: the generated class pickles by reference


def log_cosh_reference(input, target, scale=1.0):
    """The NumPy oracle, written from the definition (not the stable torch form)."""
    return np.log(np.cosh((input - target) / scale))


def log_cosh_reference_grad(input, target, scale=1.0):
    return np.tanh((input - target) / scale) / scale


SAMPLES = default_samples((4, 3), (5,), (), kwargs=[{}, {"scale": 0.5}])


@pytest.fixture
def info():
    entry = log_cosh_loss.register(
        log_cosh_reference,
        samples=SAMPLES,
        reference_grad=log_cosh_reference_grad,
        formula="log cosh((x - y) / scale)",
    )
    yield entry
    log_cosh_loss.unregister()
    assert all(i.name != "log_cosh_loss" for i in _registry.all_losses())


def _sample_params() -> list:
    samples = SAMPLES(torch.Generator().manual_seed(0))
    return [pytest.param(s, id=f"{i}-{s.desc}".replace(" ", "_")) for i, s in enumerate(samples)]


# ---------------------------------------------------------------- the generic suite


@pytest.mark.parametrize("sample", _sample_params())
def test_generic_suite_on_the_custom_loss(info, sample):
    for dtype in FLOATS:
        conformance.test_value_matches_reference(info, sample, dtype)
    for dtype in HALVES:
        conformance.test_half_precision_against_upcast_reference(info, sample, dtype)
    conformance.test_grad_matches_reference_finite_differences(info, sample)
    conformance.test_grad_matches_reference_closed_form(info, sample)
    conformance.test_gradcheck(info, sample)
    conformance.test_module_equals_functional(info, sample)
    conformance.test_non_contiguous_inputs(info, sample)


def test_generated_bad_inputs_raise_in_functional_and_module(info):
    cases = info.error_cases()
    matches = " ".join(c.match for c in cases)
    assert "scale must be in" in matches and "scale must be" in matches
    for case in cases:
        conformance.test_bad_input_raises(info, case)
    conformance.test_unknown_reduction_raises_in_functional_and_constructor(info)


def test_losskit_check_and_list_see_the_registered_loss(info, capsys):
    from losskit import cli

    row = check_loss(info)
    assert row.passed and row.cases == len(SAMPLES(torch.Generator())) * 3 * 2
    assert cli.main(["check", "--loss", "log_cosh_loss"]) == 0
    assert cli.main(["list", "--family", "custom"]) == 0
    out = capsys.readouterr().out
    assert "log_cosh_loss" in out and "log cosh((x - y) / scale)" in out


def test_a_wrong_reference_is_caught_by_the_check():
    wrong = log_cosh_loss.loss_info(
        lambda x, t, scale=1.0: 1.01 * log_cosh_reference(x, t, scale), SAMPLES
    )
    row = check_loss(wrong)
    assert not row.passed and "reference mismatch" in row.failures[0]


def test_the_registration_does_not_outlive_the_fixture():
    assert all(i.name != "log_cosh_loss" for i in _registry.all_losses())


def test_a_taken_name_is_refused(info):
    with pytest.raises(ValueError, match="already registered"):
        log_cosh_loss.register(log_cosh_reference, SAMPLES)
    clash = elementwise_loss(name="cross_entropy")(lambda input, target: (input - target) ** 2)
    with pytest.raises(ValueError, match="'cross_entropy' is already registered"):
        clash.register(lambda x, t: (x - t) ** 2, SAMPLES)
    assert _registry.get("cross_entropy").functional is losskit.cross_entropy


# ---------------------------------------------------------------- the template itself


def test_functional_signature_module_and_weight():
    assert isinstance(log_cosh_loss, ElementwiseLoss)
    assert str(inspect.signature(log_cosh_loss)) == (
        "(input, target, weight=None, reduction='mean', *, scale=1.0)"
    )
    assert issubclass(LogCoshLoss, losskit.nn.Loss) and LogCoshLoss.__name__ == "LogCoshLoss"
    x = torch.tensor([[0.5, -2.0, 30.0]], dtype=F64)
    t = torch.zeros_like(x)
    w = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    per = torch.tensor(
        [math.log(math.cosh(0.25)), math.log(math.cosh(1.0)), 15 - math.log(2)], dtype=F64
    )
    out = log_cosh_loss(x, t, w, "none", scale=2.0)
    torch.testing.assert_close(out, (per * w)[None], rtol=1e-12, atol=1e-12)
    crit = LogCoshLoss(weight=w, scale=2.0, reduction="sum")
    assert "scale=2.0" in repr(crit) and "weight" in crit.state_dict()
    torch.testing.assert_close(crit(x, t), out.sum(), rtol=0, atol=0)
    clone = pickle.loads(pickle.dumps(crit))
    torch.testing.assert_close(clone(x, t), out.sum(), rtol=0, atol=0)


def test_module_validates_hyper_parameters_when_built():
    with pytest.raises(ValueError, match=r"scale must be in \(0, inf\), got 0"):
        LogCoshLoss(scale=0)
    with pytest.raises(TypeError, match="scale must be a real number, got str"):
        LogCoshLoss(scale="2")
    with pytest.raises(TypeError, match="unexpected keyword argument 'sclae'"):
        LogCoshLoss(sclae=2.0)
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        LogCoshLoss(reduction="avg")


def test_half_precision_computes_in_float32_and_returns_the_input_dtype():
    seen = []

    @elementwise_loss
    def probe(input, target):
        seen.append((input.dtype, target.dtype))
        return (input - target) ** 2

    out = probe(torch.ones(3, dtype=torch.float16), torch.zeros(3, dtype=torch.int64))
    assert out.dtype == torch.float16 and seen == [(torch.float32, torch.float32)]


def test_bool_and_int_hyper_parameters_keep_their_type():
    @elementwise_loss(bounds={"power": "[1, 4]"})
    def powered(input, target, power: int = 2, squash: bool = False):
        d = (input - target).abs() ** power
        return torch.tanh(d) if squash else d

    x = torch.tensor([2.0])
    assert float(powered(x, torch.zeros(1), power=3, squash=False)) == 8.0
    with pytest.raises(TypeError, match="power must be an int, got float"):
        powered(x, x, power=3.0)
    with pytest.raises(TypeError, match="squash must be a bool, got int"):
        powered.module(squash=1)
    with pytest.raises(ValueError, match=r"power must be in \[1, 4\], got 5"):
        powered.module(power=5)


def test_formula_returning_the_wrong_shape_is_reported():
    @elementwise_loss
    def reduced_by_mistake(input, target):
        return ((input - target) ** 2).mean()

    with pytest.raises(
        ValueError, match=r"reduced_by_mistake must return the element-wise loss.*\(2, 3\).*\(\)"
    ):
        reduced_by_mistake(torch.zeros(2, 3), torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: elementwise_loss(lambda input, target, k: input),
            TypeError,
            "'k' needs a default",
        ),
        (
            lambda: elementwise_loss(lambda input, target, k=None: input),
            TypeError,
            "float, int or bool",
        ),
        (
            lambda: elementwise_loss(lambda input, target, weight=1.0: input),
            TypeError,
            "'weight' is handled",
        ),
        (lambda: elementwise_loss(lambda input, target, **kw: input), TypeError, r"\*\*kwargs"),
        (lambda: elementwise_loss(lambda input: input), TypeError, r"\(input, target"),
        (
            lambda: elementwise_loss(bounds={"k": "0..1"})(lambda input, target, k=0.5: input),
            ValueError,
            "intervals such as",
        ),
        (
            lambda: elementwise_loss(bounds={"k": "(0, 1)"})(lambda input, target, k=2.0: input),
            ValueError,
            "default k=2.0 lies outside",
        ),
        (
            lambda: elementwise_loss(bounds={"z": "(0, 1)"})(lambda input, target, k=2.0: input),
            ValueError,
            "'z', which is not",
        ),
    ],
)
def test_unusable_formulas_are_rejected_at_decoration_time(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_default_samples_cover_shapes_kwargs_and_weights():
    samples = default_samples((2, 3), (4,), kwargs=[{}, {"scale": 2.0}], target="sign")(
        torch.Generator().manual_seed(0)
    )
    shapes = [tuple(s.args[0].shape) for s in samples]
    assert shapes == [(2, 3), (2, 3), (4,), (4,), (2, 3), (2, 3)]
    assert [tuple(s.kwargs["weight"].shape) for s in samples[4:]] == [(2, 3), (3,)]
    assert all(set(s.args[1].unique().tolist()) <= {-1.0, 1.0} for s in samples)
    with pytest.raises(ValueError, match="sample kind must be"):
        default_samples((2,), input="gaussian")(torch.Generator())
