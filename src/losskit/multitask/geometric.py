"""Geometric-mean loss: the multi-task loss that is invariant to each task's loss scale."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import MultiTaskWeighting

__all__ = ["GeometricMeanLoss"]


class GeometricMeanLoss(MultiTaskWeighting):
    r"""Train on the geometric mean of the task losses, computed as ``exp(mean(log L))``.

    .. math::
        \mathcal L = \Bigl(\prod_{t=1}^T L_t\Bigr)^{1/T} = \exp\Bigl(\frac1T \sum_t \log L_t\Bigr),
        \qquad
        \frac{\partial \mathcal L}{\partial L_t} = \frac{\mathcal L}{T\,L_t}

    The log form never forms the product, which under- or overflows for many tasks or very
    unequal scales. Because :math:`\log\mathcal L = \operatorname{mean}_t \log L_t`, rescaling one
    task's loss by a constant rescales the total but not the *direction* of the update: each task
    is effectively weighted by :math:`1/L_t`, so a task with a small loss is not drowned out.
    ``weights`` returns those effective weights :math:`\mathcal L / (T L_t)` from the last call (so
    :math:`\sum_t w_t L_t = \mathcal L`; :math:`1/T` before the first call).

    Args:
        num_tasks: number of tasks ``T``.
        task_names: optional task names (else taken from the first dict of losses).

    Edge behaviour: every loss must be > 0 (the log of 0 is :math:`-\infty` and the gradient
    :math:`\mathcal L/(T L_t)` is 0/0); a loss <= 0 raises ``ValueError`` (the check reads the
    values, see :func:`losskit.set_checks`). Nothing is learned.

    Example:
        >>> GeometricMeanLoss(2)([torch.tensor(4.0), torch.tensor(9.0)])
        tensor(6.)

    Reference: S. Chennupati, G. Sistu, S. Yogamani, S. A. Rawashdeh, "MultiNet++: Multi-Stream
    Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019.
    """

    last_weights: torch.Tensor

    def __init__(self, num_tasks: int, task_names: Sequence[str] | None = None) -> None:
        super().__init__(num_tasks, task_names)
        self.register_buffer("last_weights", torch.full((self.num_tasks,), 1.0 / self.num_tasks))

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        self._check_positive(losses, "the geometric mean takes their logarithm")
        total = torch.exp(torch.log(losses).mean())
        with torch.no_grad():
            self.last_weights.copy_(total / (self.num_tasks * losses))
        return total

    @property
    def weights(self) -> torch.Tensor:
        return self.last_weights.detach().clone()
