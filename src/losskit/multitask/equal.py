"""Equal weighting: the plain sum or mean of the task losses, the baseline every strategy is compared to."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import MultiTaskWeighting

__all__ = ["EqualWeighting", "MeanWeighting", "SumWeighting"]

_MODES = ("sum", "mean")


class EqualWeighting(MultiTaskWeighting):
    r"""Equal task weights: the sum (``w_t = 1``) or the mean (``w_t = 1/T``) of the task losses.

    .. math::
        \mathcal{L} = \sum_t w_t L_t, \qquad w_t = 1 \ (\text{sum}) \quad\text{or}\quad
        w_t = 1/T \ (\text{mean})

    The two modes differ only by the constant factor ``T``, which matters in practice: it scales the
    gradient, so with plain SGD it acts like a ``T`` times larger learning rate (Adam is nearly
    invariant to it). Nothing is learned and nothing is stored.

    Args:
        num_tasks: number of tasks ``T``.
        mode: ``"sum"`` (default) or ``"mean"``.
        task_names: optional task names (else taken from the first dict of losses).

    Example:
        >>> strategy = EqualWeighting(2, mode="mean")
        >>> strategy([torch.tensor(1.0), torch.tensor(3.0)])
        tensor(2.)
        >>> strategy.weights
        tensor([0.5000, 0.5000])

    :class:`SumWeighting` and :class:`MeanWeighting` are the two modes under their own names.
    """

    def __init__(
        self, num_tasks: int, mode: str = "sum", task_names: Sequence[str] | None = None
    ) -> None:
        super().__init__(num_tasks, task_names)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.sum() if self.mode == "sum" else losses.mean()

    @property
    def weights(self) -> torch.Tensor:
        value = 1.0 if self.mode == "sum" else 1.0 / self.num_tasks
        return torch.full((self.num_tasks,), value)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"


class SumWeighting(EqualWeighting):
    """The sum of the task losses: :class:`EqualWeighting` with ``mode="sum"``.

    Example:
        >>> SumWeighting(2)([torch.tensor(1.0), torch.tensor(3.0)])
        tensor(4.)
    """

    def __init__(self, num_tasks: int, task_names: Sequence[str] | None = None) -> None:
        super().__init__(num_tasks, mode="sum", task_names=task_names)


class MeanWeighting(EqualWeighting):
    """The mean of the task losses: :class:`EqualWeighting` with ``mode="mean"``.

    Example:
        >>> MeanWeighting(2)([torch.tensor(1.0), torch.tensor(3.0)])
        tensor(2.)
    """

    def __init__(self, num_tasks: int, task_names: Sequence[str] | None = None) -> None:
        super().__init__(num_tasks, mode="mean", task_names=task_names)
