"""Argument checks shared by every loss.

Each check raises ``TypeError`` / ``ValueError`` / ``IndexError`` with a message that names the
argument, what was received and what was expected. Where losskit mirrors a torch loss, the wording
follows torch's so that existing ``pytest.raises(match=...)`` patterns keep working.

Checks that must read tensor values (class index in range, probabilities in [0, 1]) synchronise
with the device. They are on by default, so that a bad target is a Python exception even on CUDA
instead of a device-side assert; ``set_checks("shapes")`` turns them off for speed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._autograd import functorch_active

_CHECK_LEVELS = ("all", "shapes")
_check_level = "all"


def set_checks(level: str) -> None:
    """Choose which argument checks run.

    ``"all"`` (default): shape, dtype, parameter *and* value checks (the latter read tensor values,
    which synchronises a CUDA stream). ``"shapes"``: skip the value checks.
    """
    global _check_level
    if level not in _CHECK_LEVELS:
        raise ValueError(f"set_checks() got level={level!r}; expected one of {_CHECK_LEVELS}")
    _check_level = level


def get_checks() -> str:
    """The current check level (see :func:`set_checks`)."""
    return _check_level


def value_checks_enabled() -> bool:
    return _check_level == "all"


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


def check_floating(name: str, value: object) -> torch.Tensor:
    t = check_tensor(name, value)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def check_integer(name: str, value: object) -> torch.Tensor:
    t = check_tensor(name, value)
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
    target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> None:
    """Raise ``IndexError`` if a (non-ignored) class index is outside ``[0, num_classes)``.

    Reads the target, so it is skipped under ``set_checks("shapes")``.
    """
    if not value_checks_enabled() or target.numel() == 0:
        return
    bad = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if any_true(bad):
        first = int(target[bad].flatten()[0])
        raise IndexError(
            f"Target {first} is out of bounds: class indices must be in [0, {num_classes})"
            + (f" or equal ignore_index={ignore_index}" if ignore_index is not None else "")
        )


def check_values_in(name: str, t: torch.Tensor, low: float, high: float) -> None:
    """Raise ``ValueError`` if an element of ``t`` lies outside ``[low, high]`` (NaN included)."""
    if not value_checks_enabled() or t.numel() == 0:
        return
    # One pass over t (aminmax propagates NaN, which fails both comparisons); the elementwise
    # test below only runs to name an offending value.
    lowest, highest = torch.aminmax(t)
    if not any_true(~((lowest >= low) & (highest <= high))):
        return
    bad = ~((t >= low) & (t <= high))
    if any_true(bad):
        first = float(t[bad].flatten()[0])
        raise ValueError(
            f"all elements of {name} should be between {low:g} and {high:g}, found {first!r}"
        )
