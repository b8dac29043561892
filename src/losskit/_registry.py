"""The catalogue of losses: an "OpInfo-lite" that every generic test and ``losskit check`` iterate.

A :class:`LossInfo` says how to call a loss three ways (functional, Module, NumPy reference), which
torch function it mirrors, how to build sample inputs and which bad inputs must raise. Registering a
loss once gives it the whole conformance suite.

Conventions for samples: floating tensors are built in float64 on the CPU; a test casts them to the
dtype and device under test with :meth:`Sample.cast`. Positional arguments go to the Module's
``forward``, keyword arguments to its constructor (as in ``torch.nn``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ._dispatch import Backends
from ._reduction import REDUCTIONS

SampleFn = Callable[[torch.Generator], Sequence["Sample"]]


def _cast_value(value: Any, dtype: torch.dtype, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value.detach().to(device=device, dtype=dtype)
        return value.to(device=device)
    return value


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return t.double().numpy() if t.is_floating_point() else t.numpy()
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
        return np.asarray(value, dtype=np.int64)
    return value


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One call of a loss: positional tensors and keyword arguments (without ``reduction``)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    desc: str = ""
    # Keyword overrides for the NumPy reference (e.g. a NumPy distance function).
    ref_kwargs: dict[str, Any] = field(default_factory=dict)
    # Keyword overrides for the mirrored torch function, or ``None`` to skip torch for this sample.
    torch_kwargs: dict[str, Any] | None = field(default_factory=dict)

    def cast(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Sample:
        """A copy with floating tensors in ``dtype`` on ``device`` (integer tensors keep theirs)."""
        return replace(
            self,
            args=tuple(_cast_value(a, dtype, device) for a in self.args),
            kwargs={k: _cast_value(v, dtype, device) for k, v in self.kwargs.items()},
        )

    def with_reduction(self, reduction: str) -> Sample:
        return replace(self, kwargs={**self.kwargs, "reduction": reduction})

    def numpy(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for the NumPy reference: float64/int64 arrays plus ``ref_kwargs``."""
        args = tuple(_to_numpy(a) for a in self.args)
        kwargs = {k: _to_numpy(v) for k, v in self.kwargs.items()}
        kwargs.update(self.ref_kwargs)
        return args, kwargs


@dataclass(frozen=True, kw_only=True)
class ErrorCase:
    """A bad call and the exception it must raise (``match`` is a regex for the message)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    error: type[Exception]
    match: str
    desc: str = ""
    # Module constructor kwargs also raise (hyper-parameter errors); False for bad tensors only.
    in_constructor: bool = False


@dataclass(frozen=True)
class LossInfo:
    """Everything the generic suite needs to know about one loss."""

    name: str
    family: str
    formula: str  # one line, shown by ``losskit list``
    functional: Callable[..., torch.Tensor]
    module: type[torch.nn.Module] | None
    reference: Callable[..., Any]
    samples: SampleFn
    error_cases: Callable[[], Sequence[ErrorCase]] = lambda: ()
    # The mirrored ``torch.nn.functional`` function, if torch has this loss.
    torch_functional: Callable[..., torch.Tensor] | None = None
    reductions: tuple[str, ...] = REDUCTIONS
    # Indices of the positional arguments that are differentiable floating inputs.
    grad_args: tuple[int, ...] = (0,)
    # Analytic gradient of the reference w.r.t. ``args[0]`` (same call signature), if written.
    reference_grad: Callable[..., Any] | None = None
    # Edge cases (empty batch, all ignored, extreme logits) compared against torch only.
    edge_samples: SampleFn = lambda g: ()
    # One random sample for property-based tests: (generator, batch, classes) -> Sample.
    random_sample: Callable[[torch.Generator, int, int], Sample] | None = None
    supports_half: bool = True
    # Whether ``torch.compile(fullgraph=True)`` traces the loss in one graph. False only where the
    # output's shape depends on the data (batch-all and semi-hard mining list their triplets):
    # those compile with graph breaks and must still give the eager answer.
    compiles_whole: bool = True
    differentiable: bool = True
    # Whether torch's autograd gradient is the mathematical gradient we also compute (see ctc_loss).
    torch_grad_parity: bool = True
    # Whether edge-case gradients match torch (False where a documented choice differs, e.g. BCE
    # at probabilities exactly 0 or 1).
    edge_grad_parity: bool = True
    # (rtol, atol) per dtype for comparisons with the reference and with torch.
    # The backends the functional dispatches to (the same record it calls). Left ``None`` it is
    # read from the functional's ``backends`` attribute; a functional without one is its own
    # single ``formula`` backend.
    backends: Backends | None = None
    tolerances: dict[torch.dtype, tuple[float, float]] = field(
        default_factory=lambda: {
            torch.float64: (1e-7, 1e-9),
            torch.float32: (1e-4, 1e-5),
            torch.float16: (2e-2, 2e-2),
            torch.bfloat16: (5e-2, 5e-2),
        }
    )

    def tolerance(self, dtype: torch.dtype) -> tuple[float, float]:
        return self.tolerances[dtype]

    @property
    def backend_names(self) -> tuple[str, ...]:
        """The declared backends (``("formula",)`` when the functional is the only one)."""
        record = self.dispatch_record
        return ("formula",) if record is None else record.names

    @property
    def dispatch_record(self) -> Backends | None:
        """The :class:`~losskit._dispatch.Backends` record the functional calls, if it has one."""
        if self.backends is not None:
            return self.backends
        return getattr(self.functional, "backends", None)


_REGISTRY: dict[str, LossInfo] = {}
# Where each loss was registered (file, line): ``losskit list --where`` shows it.
_REGISTERED_AT: dict[str, tuple[str, int]] = {}


def register(info: LossInfo) -> LossInfo:
    """Add a loss to the catalogue (a name may be registered once)."""
    if info.name in _REGISTRY:
        raise ValueError(f"a loss named {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    caller = sys._getframe(1)
    _REGISTERED_AT[info.name] = (caller.f_code.co_filename, caller.f_lineno)
    return info


def registered_at(name: str) -> tuple[str, int] | None:
    """The file and line of the ``register`` call of ``name``."""
    _load_builtin_specs()
    return _REGISTERED_AT.get(name)


def unregister(name: str) -> None:
    """Remove a loss from the catalogue (for user losses registered in tests or notebooks)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> LossInfo:
    _load_builtin_specs()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no loss named {name!r} is registered; see `losskit list`") from None


def all_losses(family: str | None = None) -> list[LossInfo]:
    """Every registered loss (built-in ones first, in catalogue order), optionally one family."""
    _load_builtin_specs()
    return [i for i in _REGISTRY.values() if family is None or i.family == family]


_loaded = False


def _load_builtin_specs() -> None:
    # The specs import the loss modules; loading them lazily keeps ``import losskit`` light.
    global _loaded
    if not _loaded:
        _loaded = True
        from . import specs  # noqa: F401
