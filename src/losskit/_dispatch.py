"""The one dispatch seam between every functional and its backends.

A functional validates its arguments, then calls its :class:`Backends` record with the validated
arguments. The record holds up to three implementations with one call signature:

* ``torch``: torch's own native functional (the default for a torch mirror where the semantics
  are the same: nothing is faster or better tested);
* ``formula``: losskit's own PyTorch composition;
* ``kernel``: a Triton kernel with its ``torch.autograd.Function``.

Each backend may come with a *refusal rule* (``refuses={"kernel": fn}``): ``fn`` takes the same
arguments and returns a reason it cannot run this call, or ``None``. That is the one table beside a
kernel saying which calls it takes.

Choice, in ``"auto"`` mode (the default): the kernel when one is declared, the kernel mode allows
it (:func:`losskit.kernels.use_kernels`), the tensors are on CUDA and it does not refuse; otherwise
``torch`` if declared and not refusing; otherwise ``formula``. :func:`use_backend` pins one backend
(thread-local; also a context manager): a loss without it, or whose rule refuses the call, raises
:class:`BackendUnsupportedError` saying why. A pinned ``kernel`` runs on CPU tensors under
``TRITON_INTERPRET=1``, which is how the conformance suite runs every kernel.

The registry entry of a loss points at the same record (``LossInfo.backends``), so tests,
``losskit check --backend`` and ``losskit bench`` see exactly what the functional dispatches to.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import torch

__all__ = [
    "BACKEND_NAMES",
    "BackendUnsupportedError",
    "Backends",
    "get_backend",
    "use_backend",
]

BACKEND_NAMES = ("torch", "formula", "kernel")
_BACKEND_MODES = ("auto", *BACKEND_NAMES)
KERNEL_MODES = ("auto", "always", "never")
CHECK_LEVELS = ("all", "shapes")


def _initial_kernel_mode() -> str:
    mode = os.environ.get("LOSSKIT_KERNELS", "auto").strip().lower()
    if mode not in KERNEL_MODES:
        warnings.warn(
            f"LOSSKIT_KERNELS={mode!r} is not one of {KERNEL_MODES}; using 'auto'", stacklevel=2
        )
        return "auto"
    return mode


_INITIAL_KERNEL_MODE = _initial_kernel_mode()


class _State(threading.local):
    """Per-thread switches. A ``threading.local`` subclass: torch.compile traces its reads."""

    backend = "auto"
    kernels = _INITIAL_KERNEL_MODE
    checks = "all"
    trace: list[tuple[str, str]] | None = None  # (loss, backend) of each call, inside ``traced()``


state = _State()


class BackendUnsupportedError(RuntimeError):
    """A pinned backend (or ``use_kernels("always")``) cannot run the call; the message says why."""


class _Restore:
    """Returned by the setters: the switch is already set; ``with`` restores the old value on exit."""

    __slots__ = ("_attr", "_previous")

    def __init__(self, attr: str, previous: str) -> None:
        self._attr = attr
        self._previous = previous

    def __enter__(self) -> _Restore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        setattr(state, self._attr, self._previous)

    def __repr__(self) -> str:
        return f"<losskit {self._attr}: {getattr(state, self._attr)!r}>"


def set_switch(attr: str, value: object, allowed: tuple[str, ...], caller: str) -> _Restore:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{caller}() got {value!r}; expected one of {allowed}")
    previous = getattr(state, attr)
    setattr(state, attr, value)
    return _Restore(attr, previous)


def use_backend(name: str) -> _Restore:
    """Pin the backend of every loss in this thread: ``"auto" | "torch" | "formula" | "kernel"``.

    Takes effect at once; used as ``with use_backend("formula"): ...`` the previous choice comes
    back at the end of the block.
    """
    return set_switch("backend", name, _BACKEND_MODES, "use_backend")


class traced:
    """``with traced() as calls:`` lists ``(loss, backend)`` for every loss called in the block
    (this thread): how ``losskit bench`` reports the backend that ran."""

    def __enter__(self) -> list[tuple[str, str]]:
        self._previous = state.trace
        state.trace = []
        return state.trace

    def __exit__(self, *exc: object) -> None:
        state.trace = self._previous


def get_backend() -> str:
    """The backend pinned in this thread (``"auto"`` when none is)."""
    return state.backend


# ---------------------------------------------------------------- kernel availability


@functools.lru_cache(maxsize=1)
def kernels_available() -> bool:
    """Whether ``triton`` can be imported (checked once)."""
    try:
        if importlib.util.find_spec("triton") is None:
            return False
        import triton  # noqa: F401
    except Exception:  # a broken install must not break the PyTorch path
        return False
    return True


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def transforms_active() -> bool:
    try:
        return bool(torch._C._are_functorch_transforms_active())
    except AttributeError:  # older torch
        return False


def _tensors(args: Iterable[Any], kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
    found = [a for a in args if isinstance(a, torch.Tensor)]
    found.extend(v for v in kwargs.values() if isinstance(v, torch.Tensor))
    return found


def _on_cuda(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether the call's tensors are on CUDA: the first argument's device when it is a tensor
    (every functional checks that its tensors share the input's device), else any tensor's."""
    first = args[0] if args else None
    if isinstance(first, torch.Tensor):
        return first.is_cuda
    return _any_cuda(args, kwargs)


def _any_cuda(args: Iterable[Any], kwargs: Mapping[str, Any]) -> bool:
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_cuda:
            return True
    return any(isinstance(v, torch.Tensor) and v.is_cuda for v in kwargs.values())


def kernel_problem(tensors: list[torch.Tensor], forced: bool) -> str | None:
    """Why no kernel can run on these tensors (device, triton, transforms, tracing), or None."""
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return f"tensors on several devices {sorted(map(str, devices))}"
    device = next(iter(devices)) if devices else torch.device("cpu")
    if device.type != "cuda" and not (device.type == "cpu" and forced and interpreter_enabled()):
        return f"tensors on {device} (kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1)"
    if not kernels_available():
        return "triton is not installed (pip install 'losskit[kernels]')"
    if transforms_active():
        return "torch.func transforms (vmap, grad, jvp) are active"
    if not forced and torch.compiler.is_compiling():
        return "torch.compile is tracing (it compiles the PyTorch path instead)"
    return None


# ---------------------------------------------------------------- the record and the choice


class Backends:
    """The backends of one loss, called with the functional's validated arguments.

    ``refuses`` maps a backend name to its rule: ``rule(*args, **kwargs) -> reason | None``.
    """

    __slots__ = ("_cpu_order", "formula", "kernel", "name", "prefer", "refuses", "torch")

    def __init__(
        self,
        name: str,
        *,
        torch: Callable[..., Any] | None = None,
        formula: Callable[..., Any] | None = None,
        kernel: Callable[..., Any] | None = None,
        refuses: Mapping[str, Callable[..., str | None]] | None = None,
        prefer: str | None = None,
    ) -> None:
        if torch is None and formula is None:
            raise ValueError(f"{name}: a loss needs a torch or a formula backend")
        self.name = name
        self.torch = torch
        self.formula = formula
        self.kernel = kernel
        self.refuses = dict(refuses or {})
        unknown = set(self.refuses) - set(self.names)
        if unknown:
            raise ValueError(f"{name}: refusal rules for undeclared backends {sorted(unknown)}")
        if prefer is not None and (prefer not in ("torch", "formula") or prefer not in self.names):
            raise ValueError(
                f"{name}: prefer={prefer!r} must name a declared torch/formula backend"
            )
        # ``prefer="formula"``: a mirror whose own formula is the better default (documented at
        # the loss), with torch's op still pinnable.
        self.prefer = prefer
        order = ("formula", "torch") if prefer == "formula" else ("torch", "formula")
        # The non-kernel backends auto mode tries, in order, each with its rule (or None).
        self._cpu_order = tuple(
            (getattr(self, b), self.refuses.get(b), b)
            for b in order
            if getattr(self, b) is not None
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The declared backends, in the order ``torch, formula, kernel``."""
        return tuple(b for b in BACKEND_NAMES if getattr(self, b) is not None)

    def default(self) -> str:
        """The backend ``auto`` mode picks on the CPU when no rule refuses the call."""
        return self._cpu_order[0][2]

    def refusal(self, backend: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
        rule = self.refuses.get(backend)
        return None if rule is None else rule(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The hot path of every loss call: on the CPU a few attribute reads and the first
        # backend's rule (no list is built unless a kernel could run), so a torch mirror costs
        # about what torch's op costs.
        if state.trace is not None:
            return self._traced(args, kwargs)
        if state.backend != "auto":
            return self._run_pinned(state.backend, args, kwargs)
        _, fn, reason = self._auto(args, kwargs)
        if fn is None:
            raise BackendUnsupportedError(f"{self.name}: {reason}")
        return fn(*args, **kwargs)

    def _auto(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str, Callable[..., Any] | None, str | None]:
        """Auto mode's choice: ``(name, implementation, None)``, or ``("?", None, reason)`` when
        every backend refuses the call."""
        if (
            self.kernel is not None
            and state.kernels != "never"
            and self._kernel_wanted(args, kwargs)
        ):
            return "kernel", self.kernel, None
        reason = None
        for fn, rule, name in self._cpu_order:
            if rule is None or (reason := rule(*args, **kwargs)) is None:
                return name, fn, None
        return "?", None, reason

    def choose(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The backend this call (validated arguments) runs on, without running it."""
        return state.backend if state.backend != "auto" else self._auto(args, kwargs)[0]

    def _traced(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        calls, state.trace = state.trace, None  # untraced inside: nested losses are not listed
        try:
            calls.append((self.name, self.choose(args, kwargs)))
            return self(*args, **kwargs)
        finally:
            state.trace = calls

    def _kernel_wanted(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        forced = state.kernels == "always"
        # The cheap test first: in auto mode, no CUDA tensor means no kernel; look no further.
        if not forced and not _on_cuda(args, kwargs):
            return False
        tensors = _tensors(args, kwargs)
        reason = kernel_problem(tensors, forced) or self.refusal("kernel", args, kwargs)
        if reason is None:
            return True
        if forced:
            raise BackendUnsupportedError(
                f"{self.name}: the Triton kernel cannot run this call: {reason}. "
                "use_kernels('auto') falls back to the PyTorch path."
            )
        return False

    def _run_pinned(self, pinned: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        fn = getattr(self, pinned)
        if fn is None:
            raise BackendUnsupportedError(
                f"{self.name} has no {pinned!r} backend (it has {', '.join(self.names)})"
            )
        reason = self.refusal(pinned, args, kwargs)
        if reason is None and pinned == "kernel":
            reason = kernel_problem(_tensors(args, kwargs), forced=True)
        if reason is not None:
            raise BackendUnsupportedError(
                f"{self.name}: the {pinned!r} backend cannot run this call: {reason}"
            )
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Backends({self.name!r}: {', '.join(self.names)})"
