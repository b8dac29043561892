"""The one place that knows the reduction names and how to apply them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")
REDUCTIONS_WITH_BATCHMEAN: tuple[str, ...] = ("none", "mean", "sum", "batchmean")
# torch's integer codes of the reductions, as its native ops (torch._C._nn.*) take them.
REDUCTION_ENUM: dict[str, int] = {"none": 0, "mean": 1, "sum": 2}


def check_reduction(reduction: object, allowed: Sequence[str] = REDUCTIONS) -> str:
    """Return ``reduction`` if it is one of ``allowed``; raise ``ValueError`` otherwise.

    Called both by the functional forms and by the Module constructors, so that a typo such as
    ``reduction="avg"`` fails when the criterion is built, not at its first call.
    """
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(
            f"Invalid reduction: {reduction!r} is not a valid value for reduction; expected one of "
            + ", ".join(repr(r) for r in allowed)
        )
    return reduction


# What ``mean`` of nothing is (an empty batch, every target ignored, no mined triplet). Each call
# site names its rule, so the choice is visible where it is made:
EMPTY_NAN = "nan"  # torch's losses: 0 / 0
EMPTY_ZERO = "zero"  # torchvision's box losses, mmdetection, metric learning: 0, graph kept
EMPTY_RULES = (EMPTY_NAN, EMPTY_ZERO)


def reduce(loss: torch.Tensor, reduction: str, *, empty: str = EMPTY_NAN) -> torch.Tensor:
    """Apply ``"none" | "mean" | "sum"`` to an element-wise loss.

    ``sum`` of an empty tensor is 0; its ``mean`` is NaN with ``empty=EMPTY_NAN`` (torch's rule)
    and 0 with ``empty=EMPTY_ZERO`` (the sum of the empty, graph-attached tensor).
    """
    if reduction == "none":
        return loss
    if reduction == "mean":
        if empty == EMPTY_ZERO:
            # No branch on the size: a data-dependent one (mined triplets) must still compile.
            return loss.sum() / max(loss.numel(), 1)
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduce() got reduction={reduction!r}; expected 'none', 'mean' or 'sum'")


def weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(loss) / sum(weights)``: the mean of losses that were already multiplied by weights.

    With no weight mass (empty batch, every target ignored) this is ``0 / 0 = NaN``, as in torch.
    """
    return loss.sum() / weights.sum()
