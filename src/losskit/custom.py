"""Write your own element-wise loss: give the unreduced formula, get the rest.

:func:`elementwise_loss` turns a function ``formula(input, target, **hyper) -> Tensor`` (the
loss of each element, same shape as ``input``) into a full losskit loss:

* a functional ``loss(input, target, weight=None, reduction="mean", **hyper)`` that validates its
  arguments (floating ``input``, ``target`` of the same shape, ``weight`` broadcastable to
  ``input``, the reduction name, each hyper-parameter's type and range), computes in float32 for
  float16/bfloat16 inputs, multiplies by ``weight`` and reduces;
* ``loss.module``: an ``nn.Module`` class (a :class:`losskit.nn.Loss`) whose constructor takes
  ``weight``, ``reduction`` and the hyper-parameters and validates them when it is built;
* ``loss.register(reference, samples)``: an entry in the catalogue, so that the generic test
  suite and ``losskit check`` compare your loss with your NumPy reference (values, gradients,
  Module against functional, half precision, bad inputs).

Hyper-parameters are the keyword parameters of the formula; each needs a default that is a
``float``, an ``int`` or a ``bool`` (the type that is then enforced). ``bounds`` gives a number's
allowed interval as a string such as ``"(0, inf)"`` or ``"[0, 1]"``.

Example (log-cosh, a smooth L1-like regression loss)::

    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from losskit.custom import default_samples, elementwise_loss


    @elementwise_loss(bounds={"scale": "(0, inf)"})
    def log_cosh_loss(input, target, scale: float = 1.0):
        \"\"\"log(cosh((x - y) / scale)), written stably: |d| + softplus(-2|d|) - log 2.\"\"\"
        d = ((input - target) / scale).abs()
        return d + F.softplus(-2.0 * d) - math.log(2.0)


    LogCoshLoss = log_cosh_loss.module  # a losskit.nn.Loss; module-level name: picklable

    pred, target = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3)
    log_cosh_loss(pred, target, scale=2.0, reduction="sum").backward()
    criterion = LogCoshLoss(scale=2.0, weight=torch.ones(3))  # scale=-1 would raise here


    def log_cosh_reference(input, target, scale=1.0):  # NumPy, float64, element-wise
        return np.log(np.cosh((input - target) / scale))


    log_cosh_loss.register(
        log_cosh_reference,
        samples=default_samples((4, 3), (5,), kwargs=[{}, {"scale": 0.5}]),
        formula="log cosh((x - y) / scale)",
    )
    # The generic suite and the check behind `losskit check` now verify it, in this process:
    # losskit.cli.main(["check", "--loss", "log_cosh_loss"]); log_cosh_loss.unregister() undoes it.

The reference is element-wise too: the template applies the weight and the reduction. An
optional ``reference_grad(input, target, **hyper)`` gives the element-wise derivative
``d loss_i / d input_i`` in closed form, checked against autograd as well.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._checks import (
    check_bool,
    check_broadcasts_to,
    check_floating,
    check_int,
    check_number,
    check_optional_floating,
    check_range,
    check_same_shape,
    check_tensor,
)
from ._precision import upcast
from ._reduction import check_reduction, reduce
from ._registry import ErrorCase, LossInfo, Sample, SampleFn, all_losses, register, unregister
from .nn._base import WeightedLoss
from .reference._common import reduce as reduce_np
from .reference._common import upstream

__all__ = ["ElementwiseLoss", "elementwise_loss"]

_RESERVED = ("weight", "reduction")
_F64 = torch.float64


# ---------------------------------------------------------------- hyper-parameter bounds


class _Interval:
    """An interval parsed from ``"(0, inf)"``, ``"[0, 1]"``, ``"[-1, 1)"``..."""

    def __init__(self, text: str) -> None:
        spec = text.strip() if isinstance(text, str) else ""
        parts = spec[1:-1].split(",")
        if len(spec) < 5 or spec[0] not in "[(" or spec[-1] not in "])" or len(parts) != 2:
            raise ValueError(
                f"bounds must be intervals such as '(0, inf)' or '[0, 1]', got {text!r}"
            )
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"bounds {text!r}: the limits must be numbers or ±inf") from None
        self.text = spec
        self.low = None if low == -math.inf else low
        self.high = None if high == math.inf else high
        self.low_inclusive, self.high_inclusive = spec[0] == "[", spec[-1] == "]"

    def check(self, name: str, value: float) -> None:
        check_range(
            name,
            value,
            self.low,
            self.high,
            low_inclusive=self.low_inclusive,
            high_inclusive=self.high_inclusive,
        )

    def outside(self) -> float:
        """A value just outside the interval (for the generated error cases)."""
        return self.low - 1.0 if self.low is not None else self.high + 1.0  # type: ignore[operator]


def _check_value(name: str, default: object, value: object) -> Any:
    # The default's type is the hyper-parameter's type (bool before int: bool is an int).
    if isinstance(default, bool):
        return check_bool(name, value)
    if isinstance(default, int):
        return check_int(name, value)
    return check_number(name, value)


# ---------------------------------------------------------------- the template


class ElementwiseLoss:
    """A loss built from an element-wise formula by :func:`elementwise_loss`.

    Calling it is the functional form ``loss(input, target, weight=None, reduction="mean",
    **hyper)``; ``module`` is the generated ``nn.Module`` class; :meth:`register` and
    :meth:`loss_info` put it in the catalogue with a NumPy reference.
    """

    def __init__(
        self,
        formula: Callable[..., torch.Tensor],
        *,
        name: str | None = None,
        bounds: Mapping[str, str] | None = None,
        module_name: str | None = None,
    ) -> None:
        if not callable(formula):
            raise TypeError(
                "formula must be a function formula(input, target, **hyper) -> Tensor, "
                f"got {type(formula).__name__} {formula!r}"
            )
        self.formula = formula
        self.name = name or formula.__name__
        self.defaults = _hyper_defaults(formula)
        self.bounds = _parse_bounds(bounds or {}, self.defaults)
        self.__name__ = self.name
        self.__qualname__ = getattr(formula, "__qualname__", self.name)
        self.__module__ = formula.__module__
        self.__doc__ = formula.__doc__
        self.__signature__ = _functional_signature(self.defaults)
        self.module = _make_module(self, module_name or _camel_case(self.name))

    def __repr__(self) -> str:
        return f"<losskit element-wise loss {self.name}>"

    def check_hyper(self, hyper: Mapping[str, object]) -> dict[str, Any]:
        """Validated hyper-parameters (defaults filled in); raises ``TypeError``/``ValueError``."""
        for key in hyper:
            if key not in self.defaults:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
        out = {}
        for key, default in self.defaults.items():
            value = _check_value(key, default, hyper.get(key, default))
            if key in self.bounds:
                self.bounds[key].check(key, value)
            out[key] = value
        return out

    def __call__(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        **hyper: Any,
    ) -> torch.Tensor:
        input = check_floating("input", input)
        target = check_tensor("target", target)
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(f"target must be a floating or integer tensor, got {target.dtype}")
        check_same_shape("input", input, "target", target)
        weight = check_optional_floating("weight", weight)
        if weight is not None:
            check_broadcasts_to("weight", weight, input)
        reduction = check_reduction(reduction)
        params = self.check_hyper(hyper)

        x = upcast(input)
        loss = self.formula(x, target.to(x.dtype), **params)
        if not isinstance(loss, torch.Tensor) or loss.shape != input.shape:
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"the formula of {self.name} must return the element-wise loss, a tensor of the "
                f"input's shape {tuple(input.shape)}; it returned {got}"
            )
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        return reduce(loss, reduction).to(input.dtype)

    # ------------------------------------------------------------ registration

    def error_cases(self) -> list[ErrorCase]:
        """The bad calls every template loss must reject (argument checks of the template)."""
        x, t = torch.randn(3, 4), torch.randn(3, 4)
        cases = [
            ErrorCase(
                args=(x, t[:, :2]),
                kwargs={},
                error=ValueError,
                match=r"target size \(3, 2\).*input size \(3, 4\)",
            ),
            ErrorCase(
                args=(x.long(), t),
                kwargs={},
                error=TypeError,
                match=r"input must be a floating.*int64",
            ),
            ErrorCase(
                args=([1.0], t),
                kwargs={},
                error=TypeError,
                match=r"input must be a torch.Tensor, got list",
            ),
            ErrorCase(
                args=(x, t > 0),
                kwargs={},
                error=TypeError,
                match=r"target must be a floating or integer.*bool",
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"weight": torch.ones(5)},
                error=ValueError,
                match=r"weight of shape \(5,\)",
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"_no_such_option": 1.0},
                error=TypeError,
                match="unexpected keyword",
                desc="",
                in_constructor=True,
            ),
        ]
        for key in self.defaults:
            cases.append(
                ErrorCase(
                    args=(x, t),
                    kwargs={key: "1"},
                    error=TypeError,
                    match=f"{key} must be",
                    desc="",
                    in_constructor=True,
                )
            )
            if key in self.bounds:
                bad = self.bounds[key].outside()
                cases.append(
                    ErrorCase(
                        args=(x, t),
                        kwargs={key: bad},
                        error=ValueError,
                        match=f"{key} must be in",
                        desc="",
                        in_constructor=True,
                    )
                )
        return cases

    def loss_info(
        self,
        reference: Callable[..., Any],
        samples: SampleFn,
        *,
        reference_grad: Callable[..., Any] | None = None,
        formula: str | None = None,
        family: str = "custom",
        random_sample: Callable[[torch.Generator, int, int], Sample] | None = None,
        tolerances: dict[torch.dtype, tuple[float, float]] | None = None,
        supports_half: bool = True,
    ) -> LossInfo:
        """The catalogue entry of this loss, without registering it (see :meth:`register`).

        Args:
            reference: NumPy (float64) element-wise loss ``reference(input, target, **hyper)``,
                written independently of the torch formula.
            samples: ``samples(generator) -> [Sample]``, e.g. from :func:`default_samples`.
            reference_grad: optional element-wise ``d loss_i / d input_i`` in NumPy.
            formula: one line for ``losskit list`` (default: the formula's docstring summary).
            family: the family shown by ``losskit list`` and selected by ``--family``.
            random_sample: optional ``(generator, n, c) -> Sample`` for the property-based tests.
            tolerances: optional ``{dtype: (rtol, atol)}`` overriding the default tolerances.
            supports_half: whether float16/bfloat16 inputs are checked too.
        """
        extra: dict[str, Any] = {} if tolerances is None else {"tolerances": tolerances}
        summary = ((self.formula.__doc__ or "").strip().splitlines() or [self.name])[0]
        return LossInfo(
            name=self.name,
            family=family,
            formula=formula or summary,
            functional=self,
            module=self.module,
            reference=_reduced_reference(reference),
            reference_grad=None if reference_grad is None else _reduced_grad(reference_grad),
            samples=samples,
            error_cases=self.error_cases,
            random_sample=random_sample,
            supports_half=supports_half,
            **extra,
        )

    def register(
        self, reference: Callable[..., Any], samples: SampleFn, **options: Any
    ) -> LossInfo:
        """Add this loss to the catalogue (arguments as :meth:`loss_info`) and return its entry.

        Raises ``ValueError`` if the name is taken (a built-in loss included).
        """
        all_losses()  # load the built-in entries first, so that a clash is reported here
        return register(self.loss_info(reference, samples, **options))

    def unregister(self) -> None:
        """Remove this loss from the catalogue (a no-op if it is not registered)."""
        unregister(self.name)


def elementwise_loss(
    formula: Callable[..., torch.Tensor] | None = None,
    *,
    name: str | None = None,
    bounds: Mapping[str, str] | None = None,
    module_name: str | None = None,
) -> Any:
    """Decorator: build an :class:`ElementwiseLoss` from an element-wise formula.

    Use as ``@elementwise_loss`` or ``@elementwise_loss(bounds={"delta": "(0, inf)"})``.

    Args:
        formula: ``formula(input, target, **hyper) -> Tensor``, the loss of each element
            (``input``'s shape, no reduction). It receives ``input`` in its compute dtype
            (float32 for float16/bfloat16) and ``target`` in the same dtype.
        name: the loss's name (default: the function's name).
        bounds: allowed interval of numeric hyper-parameters, e.g. ``{"beta": "[0, 1]"}``.
        module_name: the Module class's name (default: CamelCase of ``name``).

    Returns:
        The :class:`ElementwiseLoss`, which is the functional form (see the module docstring).

    Raises ``TypeError``/``ValueError`` at decoration time for a formula whose signature the
    template cannot serve (hyper-parameters without a number/bool default, a parameter named
    ``weight`` or ``reduction``, ``*args``) or bounds that are malformed or exclude the default.
    """
    options = {"name": name, "bounds": bounds, "module_name": module_name}
    if formula is None:
        return lambda f: ElementwiseLoss(f, **options)
    return ElementwiseLoss(formula, **options)


# ---------------------------------------------------------------- helpers of the template


def _hyper_defaults(formula: Callable[..., Any]) -> dict[str, Any]:
    params = list(inspect.signature(formula).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) < 2 or any(p.kind not in positional for p in params[:2]):
        raise TypeError("the formula must take (input, target, **hyper-parameters)")
    defaults = {}
    for p in params[2:]:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"the formula may not take *args or **kwargs (got {p})")
        if p.name in _RESERVED:
            raise TypeError(
                f"{p.name!r} is handled by the template; rename the formula's parameter"
            )
        number = isinstance(p.default, (bool, int, float))
        if p.default is inspect.Parameter.empty or not number:
            raise TypeError(
                f"hyper-parameter {p.name!r} needs a default that is a float, int or bool, "
                f"got {p.default!r}"
            )
        defaults[p.name] = p.default
    return defaults


def _parse_bounds(bounds: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, _Interval]:
    out = {}
    for key, text in bounds.items():
        if key not in defaults or isinstance(defaults[key], bool):
            raise ValueError(f"bounds given for {key!r}, which is not a numeric hyper-parameter")
        interval = _Interval(text)
        try:
            interval.check(key, defaults[key])
        except ValueError:
            raise ValueError(
                f"the default {key}={defaults[key]!r} lies outside its bounds {interval.text}"
            ) from None
        out[key] = interval
    return out


def _camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Loss"


def _functional_signature(defaults: Mapping[str, Any]) -> inspect.Signature:
    P = inspect.Parameter
    params = [
        P("input", P.POSITIONAL_OR_KEYWORD),
        P("target", P.POSITIONAL_OR_KEYWORD),
        P("weight", P.POSITIONAL_OR_KEYWORD, default=None),
        P("reduction", P.POSITIONAL_OR_KEYWORD, default="mean"),
    ]
    params += [P(k, P.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    return inspect.Signature(params)


def _make_module(loss: ElementwiseLoss, class_name: str) -> type[WeightedLoss]:
    """A ``WeightedLoss`` subclass: hyper-parameters validated in ``__init__``, attributes after."""

    def __init__(self, weight=None, reduction="mean", **hyper):
        WeightedLoss.__init__(self, weight, reduction)
        for key, value in loss.check_hyper(hyper).items():
            setattr(self, key, value)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hyper = {key: getattr(self, key) for key in loss.defaults}
        return loss(input, target, self.weight, self.reduction, **hyper)

    def extra_repr(self) -> str:
        items = [f"{key}={getattr(self, key)!r}" for key in loss.defaults]
        return ", ".join([*items, WeightedLoss.extra_repr(self)])

    signature = list(_functional_signature(loss.defaults).parameters.values())[2:]
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *signature]
    )
    namespace = {
        "__init__": __init__,
        "forward": forward,
        "extra_repr": extra_repr,
        "__doc__": f"Module form of the element-wise loss ``{loss.name}`` (see its docstring).",
        "__module__": loss.__module__,
        "__qualname__": class_name,
    }
    return type(class_name, (WeightedLoss,), namespace)


def _reduced_reference(elementwise: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """The full reference signature from an element-wise NumPy reference."""

    def reference(input, target, weight=None, reduction="mean", **hyper):
        x = np.asarray(input, dtype=np.float64)
        loss = np.asarray(elementwise(x, np.asarray(target, dtype=np.float64), **hyper))
        if weight is not None:
            loss = loss * np.asarray(weight, dtype=np.float64)
        return reduce_np(np.broadcast_to(loss, x.shape).astype(np.float64), reduction)

    return reference


def _reduced_grad(elementwise_grad: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """``d sum(grad_output * loss) / d input`` from the element-wise derivative."""

    def reference_grad(input, target, weight=None, reduction="mean", grad_output=None, **hyper):
        x = np.asarray(input, dtype=np.float64)
        g = np.asarray(elementwise_grad(x, np.asarray(target, dtype=np.float64), **hyper))
        if weight is not None:
            g = g * np.asarray(weight, dtype=np.float64)
        if reduction == "none":
            return g * upstream(grad_output, x.shape)
        scale = 1.0 / max(x.size, 1) if reduction == "mean" else 1.0
        return g * scale * float(upstream(grad_output, ()))

    return reference_grad


# ---------------------------------------------------------------- samples


def _draw(kind: str | Callable, g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    if callable(kind):
        return kind(g, shape)
    if kind == "normal":
        return torch.randn(shape, generator=g, dtype=_F64)
    if kind == "uniform":
        return torch.rand(shape, generator=g, dtype=_F64)
    if kind == "positive":
        return 0.5 + 1.5 * torch.rand(shape, generator=g, dtype=_F64)
    if kind == "sign":
        return torch.randint(0, 2, shape, generator=g).to(_F64) * 2 - 1
    raise ValueError(
        f"sample kind must be 'normal', 'uniform', 'positive', 'sign' or a callable "
        f"(generator, shape) -> Tensor, got {kind!r}"
    )


def default_samples(
    *shapes: Sequence[int],
    kwargs: Iterable[Mapping[str, Any]] = ({},),
    input: str | Callable = "normal",
    target: str | Callable = "normal",
    weight: bool = True,
) -> SampleFn:
    """Sample inputs for :meth:`ElementwiseLoss.register`, built from shapes.

    One sample per shape and hyper-parameter set, plus (``weight=True``) one with a positive
    element-wise ``weight`` on the first shape and one with a weight broadcast over its last
    dimension. Tensors are float64 and small (keep each shape under ~100 elements).

    Args:
        shapes: input shapes, e.g. ``(4, 3), (5,), ()``. Default ``(4, 3)``.
        kwargs: hyper-parameter sets, e.g. ``[{}, {"scale": 0.5}]``.
        input, target: how to draw them: ``"normal"``, ``"uniform"`` (in [0, 1]),
            ``"positive"`` (in [0.5, 2]), ``"sign"`` (±1), or ``fn(generator, shape) -> Tensor``.
        weight: also sample the ``weight`` argument.

    Returns:
        ``samples(generator) -> list[Sample]``.
    """
    shape_list = [tuple(s) for s in shapes] or [(4, 3)]
    kwarg_list = [dict(k) for k in kwargs] or [{}]

    def samples(g: torch.Generator) -> list[Sample]:
        out = []
        for shape in shape_list:
            for kw in kwarg_list:
                pair = (_draw(input, g, shape), _draw(target, g, shape))
                out.append(Sample(args=pair, kwargs=kw, desc=f"shape {shape} {kw or ''}".strip()))
        if weight:
            first = shape_list[0]
            for w_shape in dict.fromkeys([first, first[-1:]]):
                pair = (_draw(input, g, first), _draw(target, g, first))
                w = _draw("positive", g, w_shape)
                out.append(
                    Sample(
                        args=pair, kwargs={**kwarg_list[-1], "weight": w}, desc=f"weight {w_shape}"
                    )
                )
        return out

    return samples
