"""Argument checks shared by every loss.

Each check raises ``TypeError`` / ``ValueError`` / ``IndexError`` with a message that names the
argument, what was received and what was expected. Where losskit mirrors a torch loss, the wording
follows torch's so that existing ``pytest.raises(match=...)`` patterns keep working.

Argument checks (types, shapes, hyper-parameters) are plain Python and cost a few microseconds.
Checks that must read tensor values (class index in range, probabilities in [0, 1]) reduce the
tensor once and synchronise with the device; they follow :func:`set_checks` and never run while
``torch.compile`` traces. On the CPU, where torch's own op already rejects the same values, a
loss running that op leaves the check to it and only rewords its error (see
:func:`value_check_needed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._autograd import functorch_active
from ._dispatch import CHECK_LEVELS, set_switch, state


def set_checks(level: str):
    """Choose which argument checks run, in this thread; also a context manager.

    ``"all"`` (default): shape, dtype, parameter *and* value checks. The value checks read tensor
    values (class index in range, probabilities in [0, 1]), once per call in one reduction, which
    synchronises a CUDA stream; they are what turns a bad CUDA target into a Python ``IndexError``
    instead of a device-side assert. ``"shapes"``: skip the value checks (no host
    synchronisation).

    Value checks are also skipped while ``torch.compile`` traces (``torch.compiler.is_compiling()``):
    reading a value there would break the graph, so a compiled loss behaves as under
    ``"shapes"``; on the CPU torch's own ops still reject out-of-range class indices there. Inside
    ``torch.func.vmap`` they are skipped too (values cannot be read).

    The level is set at once and per thread; ``with set_checks("shapes"): ...`` restores the
    previous level at the end of the block.
    """
    return set_switch("checks", level, CHECK_LEVELS, "set_checks")


def get_checks() -> str:
    """The check level of this thread (see :func:`set_checks`)."""
    return state.checks


def value_checks_enabled() -> bool:
    """Whether value checks run: level ``"all"`` and not inside ``torch.compile`` tracing."""
    return state.checks == "all" and not torch.compiler.is_compiling()


_NATIVE = ("auto", "torch")  # the backends that may leave a value check to torch's op


def value_check_needed(t: torch.Tensor, native_rejects: bool = True) -> bool:
    """Whether a value check of ``t`` must run here.

    ``native_rejects``: the loss's torch backend itself rejects these values on the CPU (with an
    error the functional rewords). Then the check is left to it when ``t`` is on the CPU and the
    torch backend may run (backend ``auto`` or ``torch``); a pinned ``formula`` or ``kernel``
    backend still gets the check.
    """
    if state.checks != "all" or (native_rejects and t.is_cpu and state.backend in _NATIVE):
        return False
    return not torch.compiler.is_compiling() and t.numel() != 0


def any_true(mask: torch.Tensor) -> bool:
    """``bool(mask.any())`` for a value check; False where values cannot be read.

    Inside ``torch.func.vmap`` a tensor's values are not available to Python, so a value check
    there is skipped rather than failing with vmap's data-dependent-control-flow error.
    """
    try:
        return bool(mask.any())
    except RuntimeError:
        if functorch_active():
            return False
        raise


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


# dtype membership is the cheapest test on the hot path (is_floating_point() costs twice as much).
_FLOATING = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})
_INDEX = frozenset({torch.int64, torch.int32})


def check_floating(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _FLOATING and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def check_integer(name: str, value: object) -> torch.Tensor:
    t = check_tensor(name, value)
    if t.dtype in _INDEX:
        return t
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor of class indices (int64), got dtype {t.dtype}"
        )
    return t


def check_optional_floating(name: str, value: object) -> torch.Tensor | None:
    return None if value is None else check_floating(name, value)


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Same shape (torch only warns and broadcasts for some losses: a classic silent bug), and
    the same device."""
    check_same_device(name_b, b, a, name_a)
    if a.shape != b.shape:
        raise ValueError(
            f"Using a {name_b} size {tuple(b.shape)} that is different to the {name_a} size "
            f"{tuple(a.shape)}; {name_a} and {name_b} must have the same shape"
        )


def check_broadcasts_to(
    name: str, t: torch.Tensor, input: torch.Tensor, target: str = "the input shape"
) -> None:
    """``t`` (a weight) broadcasts to ``input``'s shape without enlarging it, on its device.

    ``target`` names that shape in the error message.
    """
    check_same_device(name, t, input)
    try:
        shape = torch.broadcast_shapes(t.shape, input.shape)
    except RuntimeError:
        shape = None
    if shape != input.shape:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to {target} {tuple(input.shape)}"
        )


def check_ndim(name: str, t: torch.Tensor, allowed: Sequence[int]) -> None:
    if t.dim() not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(
            f"{name} must be {want}, got a {t.dim()}-D tensor of shape {tuple(t.shape)}"
        )


def check_number(name: str, value: object) -> float:
    if type(value) is float and value == value:  # the common cases first: a float, not NaN
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_int(name: str, value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def check_range(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = False,
) -> float:
    """Check that a scalar hyper-parameter lies in an interval and return it as float.

    ``finite=True`` also rejects ±inf (for the losses torch does not define, where an infinite
    hyper-parameter is never meaningful; the torch losses accept what torch accepts)."""
    v = check_number(name, value)
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (v < low if low_inclusive else v <= low)
    too_high = high is not None and (v > high if high_inclusive else v >= high)
    if too_low or too_high:
        lo = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
        raise ValueError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return v


def check_class_weight(weight: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> None:
    """A per-class weight: floating, 1-D, one entry per class, on the input's device."""
    if weight is None:
        return
    check_floating("weight", weight)
    if weight.dim() != 1 or weight.numel() != num_classes:
        raise ValueError(
            f"weight must be a 1-D tensor with one entry per class ({num_classes}), "
            f"got shape {tuple(weight.shape)}"
        )
    check_same_device("weight", weight, like)


def check_same_device(
    name: str, t: torch.Tensor, like: torch.Tensor, like_name: str = "input"
) -> None:
    if t.device != like.device:
        raise ValueError(
            f"{name} is on {t.device} but {like_name} is on {like.device}; "
            "they must be on the same device"
        )


def check_class_indices(
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
    native_rejects: bool = False,
) -> None:
    """Raise ``IndexError`` if a (non-ignored) class index is outside ``[0, num_classes)``.

    Reads the target (one reduction), so it follows :func:`value_check_needed`;
    ``native_rejects``: torch's CPU op of the loss rejects such an index itself (the functional
    then rewords torch's error with :func:`raise_class_index_error`).
    """
    if not value_check_needed(target, native_rejects):
        return
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if any_true(bad):
        raise_class_index_error(target, num_classes, ignore_index)


def raise_class_index_error(
    target: torch.Tensor, num_classes: int, ignore_index: int | None = None, low: int = 0
) -> None:
    """Raise the ``IndexError`` naming the first index outside ``[low, num_classes)``, if any.

    Called once a check (ours or torch's) has failed, so its cost does not matter.
    """
    bad = (target < low) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if bool(bad.any()):
        first = int(target[bad].flatten()[0])
        raise IndexError(
            f"Target {first} is out of bounds: class indices must be in [0, {num_classes})"
            + (f" or equal ignore_index={ignore_index}" if ignore_index is not None else "")
        )


def check_values_in(
    name: str, t: torch.Tensor, low: float, high: float, native_rejects: bool = False
) -> None:
    """Raise ``ValueError`` if an element of ``t`` lies outside ``[low, high]`` (NaN included)."""
    check_all_values_in({name: t}, low, high, native_rejects)


def check_all_values_in(
    tensors: dict[str, torch.Tensor], low: float, high: float, native_rejects: bool = False
) -> None:
    """:func:`check_values_in` for several tensors with one read of the device.

    One ``aminmax`` per tensor (it propagates NaN, which fails both comparisons) and one
    transfer of all the extremes; the element-wise test only runs to name an offending value.
    """
    named = [(n, t) for n, t in tensors.items() if value_check_needed(t, native_rejects)]
    if not named:
        return
    try:
        extremes = torch.stack([e for _, t in named for e in torch.aminmax(t)]).tolist()
    except RuntimeError:
        if functorch_active():  # values cannot be read inside vmap
            return
        raise
    for k, (name, t) in enumerate(named):
        if extremes[2 * k] >= low and extremes[2 * k + 1] <= high:
            continue
        bad = ~((t >= low) & (t <= high))
        first = float(t[bad].flatten()[0])
        raise ValueError(
            f"all elements of {name} should be between {low:g} and {high:g}, found {first!r}"
        )
