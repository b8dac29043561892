"""Base classes of the Module wrappers: validate in ``__init__``, keep tensors as buffers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_floating
from .._reduction import REDUCTIONS, check_reduction


class Loss(nn.Module):
    """A loss criterion; ``reduction`` is validated when the criterion is built."""

    reductions: Sequence[str] = REDUCTIONS

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction, self.reductions)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class WeightedLoss(Loss):
    """A loss with an optional ``weight`` tensor, kept as a buffer (moves with ``.to()``, saved)."""

    weight: torch.Tensor | None

    def __init__(self, weight: torch.Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if weight is not None:
            check_floating("weight", weight)
        self.register_buffer("weight", weight)
