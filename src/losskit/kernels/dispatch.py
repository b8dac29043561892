"""The kernel mode switch, and the helpers the kernels' refusal rules share.

``use_kernels(mode)`` sets, for the current thread, whether the Triton kernels of the losses run:

* ``"auto"`` (default): a loss's kernel runs when every tensor is on a CUDA device, ``triton`` is
  importable and the kernel's refusal rule accepts the call (dtype, options, no gradient it does
  not compute); otherwise the PyTorch path runs, silently.
* ``"always"``: a kernel must run; an unsupported call raises :class:`KernelUnsupportedError`
  saying why. CPU tensors are accepted when ``TRITON_INTERPRET=1`` (Triton's interpreter), which is
  how the kernels are tested without a GPU.
* ``"never"``: always the PyTorch path.

It takes effect at once and returns a context manager: ``with use_kernels("never"): ...`` restores
the previous mode at the end of the block. The environment variable ``LOSSKIT_KERNELS`` sets the
initial mode. The choice itself is made by each loss's :class:`~losskit._dispatch.Backends` record;
the refusal rules live beside each kernel (``losskit/kernels/<kernel>/rules.py``). Nothing here
imports ``triton`` until a kernel is about to run, so ``import losskit`` never needs it.
"""

from __future__ import annotations

import torch

from .._dispatch import (
    KERNEL_MODES,
    BackendUnsupportedError,
    interpreter_enabled,
    kernels_available,
    set_switch,
    state,
)

__all__ = [
    "KernelUnsupportedError",
    "get_kernel_mode",
    "interpreter_enabled",
    "kernels_available",
    "use_kernels",
]

MODES = KERNEL_MODES
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# One exception for "this backend cannot run the call", whichever way it was asked for.
KernelUnsupportedError = BackendUnsupportedError


def use_kernels(mode: str):
    """Set the kernel mode of this thread (``"auto" | "always" | "never"``); a context manager.

    ``use_kernels("never")`` switches the kernels off from now on in this thread;
    ``with use_kernels("always"): ...`` forces them inside the block and restores the previous
    mode on exit. Nothing happens beyond setting the mode: the returned object only restores.
    """
    return set_switch("kernels", mode, KERNEL_MODES, "use_kernels")


def get_kernel_mode() -> str:
    """The kernel mode of this thread (see :func:`use_kernels`)."""
    return state.kernels


# ---------------------------------------------------------------- shared by the refusal rules


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
