"""Guards shared by losskit's hand-written autograd Functions (the kernels and the chunked losses).

Their backward passes compute closed-form gradients that are not themselves differentiable, and
some compute the gradient during the forward. Two things must not then go silently wrong:

* a backward with ``create_graph=True`` (a gradient penalty, MAML) would get a gradient that
  autograd treats as a constant, so the second-order term would be dropped without a word;
* under ``torch.no_grad()`` a forward that fuses the gradient would still build a gradient
  buffer (or, with ``inplace_backward``, overwrite the logits) although no backward can follow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

KERNEL_HINT = "wrap this loss in losskit.kernels.use_kernels('never') for the PyTorch path"


def first_order_only(
    what: str, hint: str = KERNEL_HINT
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a ``backward``: ``once_differentiable``, and a clear error under ``create_graph``."""

    def wrap(backward: Callable[..., Any]) -> Callable[..., Any]:
        inner = once_differentiable(backward)

        @functools.wraps(backward)
        def checked(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled():  # only true inside a backward with create_graph=True
                raise RuntimeError(
                    f"{what}: this gradient is computed in closed form and is first-order only, "
                    "but the backward runs with create_graph=True (a gradient penalty or a "
                    f"higher-order gradient); {hint}."
                )
            return inner(ctx, *grads)

        return checked

    return wrap


def detach_unless_grad(t: torch.Tensor) -> torch.Tensor:
    """``t``, detached unless autograd will track it (call before ``Function.apply``).

    Inside ``forward`` grad mode is always off and ``ctx.needs_input_grad`` ignores the caller's
    ``torch.no_grad()``; detaching first makes it False there.
    """
    return t if torch.is_grad_enabled() and t.requires_grad else t.detach()


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) is running."""
    # torch's own autograd.Function uses this private check for the same purpose.
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False
