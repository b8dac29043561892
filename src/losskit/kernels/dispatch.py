"""The switch between the fused Triton kernels and the PyTorch path.

``use_kernels(mode)`` chooses globally, or for a ``with`` block:

* ``"auto"`` (default): a kernel runs when every tensor is on a CUDA device, ``triton`` is
  importable and the kernel supports the call (dtype, options, no gradient it does not compute);
  otherwise the PyTorch path runs, silently.
* ``"always"``: a kernel must run; an unsupported call raises :class:`KernelUnsupportedError`
  saying why. CPU tensors are accepted when ``TRITON_INTERPRET=1`` (Triton's interpreter), which is
  how the kernels are tested without a GPU.
* ``"never"``: always the PyTorch path.

The environment variable ``LOSSKIT_KERNELS`` sets the initial mode.

Each ``maybe_<loss>(...)`` below takes the *validated* arguments of the functional of the same name
and returns the loss computed by the kernel, or ``None`` when the PyTorch path should run. Nothing
here imports ``triton`` until a kernel is about to run, so ``import losskit`` never needs it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from collections.abc import Iterable
from types import TracebackType

import torch

__all__ = [
    "KernelUnsupportedError",
    "get_kernel_mode",
    "kernels_available",
    "maybe_binary_cross_entropy_with_logits",
    "maybe_cross_entropy",
    "maybe_kl_div",
    "maybe_sigmoid_focal_loss",
    "use_kernels",
]

MODES = ("auto", "always", "never")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelUnsupportedError(RuntimeError):
    """Raised under ``use_kernels("always")`` when no kernel can run the call."""


def _initial_mode() -> str:
    mode = os.environ.get("LOSSKIT_KERNELS", "auto").strip().lower()
    if mode not in MODES:
        warnings.warn(f"LOSSKIT_KERNELS={mode!r} is not one of {MODES}; using 'auto'", stacklevel=2)
        return "auto"
    return mode


_mode = _initial_mode()


class use_kernels:
    """Set the kernel mode (``"auto" | "always" | "never"``); also a context manager.

    ``use_kernels("never")`` switches the kernels off for the rest of the program;
    ``with use_kernels("always"): ...`` forces them inside the block and restores the previous
    mode on exit (the mode is process-global, not per thread).
    """

    def __init__(self, mode: str) -> None:
        global _mode
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"use_kernels() got mode={mode!r}; expected one of {MODES}")
        self._previous = _mode
        _mode = mode

    def __enter__(self) -> use_kernels:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _mode
        _mode = self._previous


def get_kernel_mode() -> str:
    """The current mode (see :class:`use_kernels`)."""
    return _mode


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


def _device_problem(tensors: Iterable[torch.Tensor], mode: str) -> str | None:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return f"tensors on several devices {sorted(map(str, devices))}"
    (device,) = devices
    if device.type == "cuda":
        return None
    if device.type == "cpu" and mode == "always" and interpreter_enabled():
        return None
    return f"tensors on {device} (kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1)"


def _transforms_active() -> bool:
    try:
        return bool(torch._C._are_functorch_transforms_active())
    except AttributeError:  # older torch
        return False


def select(name: str, tensors: Iterable[torch.Tensor | None], problem: str | None = None) -> bool:
    """Decide whether the kernel for ``name`` runs; ``problem`` is a reason it cannot.

    Returns ``False`` for the PyTorch path; raises :class:`KernelUnsupportedError` instead under
    ``use_kernels("always")``.
    """
    mode = _mode
    if mode == "never":
        return False
    present = [t for t in tensors if t is not None]
    reason = problem
    if reason is None and not kernels_available():
        reason = "triton is not installed (pip install 'losskit[kernels]')"
    if reason is None:
        reason = _device_problem(present, mode)
    if reason is None and _transforms_active():
        reason = "torch.func transforms (vmap, grad, jvp) are active"
    if reason is None and mode == "auto" and torch.compiler.is_compiling():
        reason = "torch.compile is tracing (it compiles the PyTorch formula instead)"
    if reason is None:
        return True
    if mode == "always":
        raise KernelUnsupportedError(
            f"{name}: the Triton kernel cannot run this call: {reason}. "
            "use_kernels('auto') falls back to the PyTorch path."
        )
    return False


def dtype_problem(name: str, t: torch.Tensor) -> str | None:
    if t.dtype not in KERNEL_DTYPES:
        return f"{name} has dtype {t.dtype} (kernels take float32, float16 or bfloat16)"
    return None


def grad_problem(**tensors: torch.Tensor | None) -> str | None:
    """A reason if a tensor the kernel treats as constant requires a gradient."""
    for name, t in tensors.items():
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            return f"{name} requires a gradient, which the kernel does not compute"
    return None


def first_problem(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


# ---------------------------------------------------------------- per-loss entry points


def maybe_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor | None:
    """:func:`losskit.cross_entropy` by the kernel, or ``None`` for the PyTorch path.

    Takes the validated arguments; class-index targets only (probability targets: ``None``).
    ``input`` is ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    """
    if _mode == "never":
        return None
    problem = first_problem(
        None if not target.is_floating_point() else "probability targets are not supported",
        dtype_problem("input", input),
        None if input.shape[1 if input.dim() > 1 else 0] > 0 else "zero classes",
        grad_problem(weight=weight),
    )
    if not select("cross_entropy", (input, target, weight), problem):
        return None
    from .cross_entropy.function import triton_cross_entropy

    return triton_cross_entropy(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


def maybe_binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """:func:`losskit.binary_cross_entropy_with_logits` by the one-pass kernel, or ``None``."""
    if _mode == "never":
        return None
    problem = first_problem(
        dtype_problem("input", input),
        grad_problem(target=target, weight=weight, pos_weight=pos_weight),
    )
    if not select("binary_cross_entropy_with_logits", (input, target, weight, pos_weight), problem):
        return None
    from .binary.function import triton_binary_cross_entropy_with_logits

    return triton_binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight)


def maybe_sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor | None:
    """:func:`losskit.sigmoid_focal_loss` by the one-pass kernel, or ``None``.

    The target is a constant there (no gradient flows to it), so it is detached here too.
    """
    if _mode == "never":
        return None
    problem = dtype_problem("input", input)
    if not select("sigmoid_focal_loss", (input, target), problem):
        return None
    from .binary.function import triton_sigmoid_focal_loss

    return triton_sigmoid_focal_loss(input, target.detach(), alpha, gamma, reduction)


def maybe_kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    log_target: bool = False,
) -> torch.Tensor | None:
    """:func:`losskit.kl_div` by the one-pass kernel, or ``None``."""
    if _mode == "never":
        return None
    problem = first_problem(
        dtype_problem("input", input),
        dtype_problem("target", target),
        grad_problem(target=target),
    )
    if not select("kl_div", (input, target), problem):
        return None
    from .kl.function import triton_kl_div

    return triton_kl_div(input, target, reduction, log_target)
