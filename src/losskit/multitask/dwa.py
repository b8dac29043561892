"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_range
from .base import MultiTaskWeighting, mean_over_ranks

__all__ = ["DynamicWeightAverage"]

_PERIODS = ("epoch", "step")


class DynamicWeightAverage(MultiTaskWeighting):
    r"""Weight tasks by how slowly their losses went down over the last two periods (DWA).

    With :math:`\bar L_t(k)` the mean loss of task ``t`` over period ``k`` (an epoch, or one step):

    .. math::
        r_t = \frac{\bar L_t(k-1)}{\bar L_t(k-2)}, \qquad
        w_t(k) = T\,\frac{\exp(r_t / \tau)}{\sum_i \exp(r_i / \tau)}

    so the weights sum to ``T`` and a task whose loss fell less (larger :math:`r_t`) gets more
    weight; a larger temperature :math:`\tau` makes them more even (:math:`\tau\to\infty`: all 1).
    ``total = Σ_t w_t · L_t`` with the weights fixed during a period.

    Periods. With ``period="epoch"`` (the paper's setting) each call in training mode adds the
    detached losses to a running mean, and :meth:`end_epoch` closes the period: it stores the mean
    and recomputes the weights for the next one. With ``period="step"`` every training call is a
    period of its own (the ratios compare the previous two calls; no :meth:`end_epoch` needed).
    Calls in eval mode (``strategy.eval()``) are not recorded, so validation losses can be weighted
    without disturbing the statistics.

    Args:
        num_tasks: number of tasks ``T``.
        temperature: :math:`\tau > 0` (default 2, as in the paper).
        period: ``"epoch"`` (default) or ``"step"``.
        task_names: optional task names (else taken from the first dict of losses).

    Edge behaviour: the weights are 1 during the first two periods (no ratio exists yet). The
    ratios need positive losses: a recorded loss <= 0 raises ``ValueError`` (checked with the
    NaN check; see :func:`losskit.set_checks`). :meth:`end_epoch` with no recorded call since the
    last one raises ``RuntimeError``. The history, the running sums and the period counter are
    buffers (saved in the ``state_dict``, so training can resume mid-epoch).

    Example:
        >>> dwa = DynamicWeightAverage(2, temperature=2.0)
        >>> for epoch_losses in ([2.0, 1.0], [1.0, 1.0], [0.5, 1.0]):
        ...     _ = dwa([torch.tensor(x) for x in epoch_losses])  # one call per batch
        ...     _ = dwa.end_epoch()
        >>> dwa.weights  # r = (0.5, 1): 2·softmax(r / 2)
        tensor([0.8756, 1.1244])

    Reference: S. Liu, E. Johns, A. J. Davison, "End-to-End Multi-Task Learning with Attention",
    CVPR 2019 (section 3.3).
    """

    loss_history: torch.Tensor
    num_periods: torch.Tensor
    running_sum: torch.Tensor
    running_count: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        temperature: float = 2.0,
        period: str = "epoch",
        task_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(num_tasks, task_names)
        self.temperature = check_range("temperature", temperature, 0.0, low_inclusive=False)
        if not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be finite, got {temperature!r}")
        if period not in _PERIODS:
            raise ValueError(f"period must be one of {_PERIODS}, got {period!r}")
        self.period = period
        # Row 0: mean losses of the last closed period L(k-1); row 1: the one before, L(k-2).
        # Ones, not zeros, so the (masked) ratio is finite before two periods exist.
        self.register_buffer("loss_history", torch.ones(2, self.num_tasks))
        self.register_buffer("num_periods", torch.zeros((), dtype=torch.long))
        self.register_buffer("running_sum", torch.zeros(self.num_tasks))
        self.register_buffer("running_count", torch.zeros((), dtype=torch.long))

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        total = (self.weights.to(losses.dtype) * losses).sum()
        if self.training:
            self._check_positive(losses, "DWA divides by past losses")
            with torch.no_grad():
                self.running_sum += losses.detach().to(self.running_sum)
                self.running_count += 1
            if self.period == "step":
                self._close_period()
        return total

    def end_epoch(self) -> torch.Tensor:
        """Close the current period: store its mean losses, return the weights for the next one."""
        if int(self.running_count) == 0:
            raise RuntimeError(
                "DynamicWeightAverage.end_epoch(): no losses were recorded since the last period "
                "ended (call the strategy in training mode on each batch's losses first)"
            )
        self._close_period()
        return self.weights

    @torch.no_grad()
    def _close_period(self) -> None:
        mean = mean_over_ranks(self.running_sum / self.running_count)  # same history on every rank
        self.loss_history.copy_(torch.stack([mean, self.loss_history[0]]))
        self.num_periods += 1
        self.running_sum.zero_()
        self.running_count.zero_()

    @property
    def weights(self) -> torch.Tensor:
        ratio = self.loss_history[0] / self.loss_history[1]
        dwa = self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)
        # where() rather than an if: no device read on the hot path.
        return torch.where(self.num_periods >= 2, dwa, torch.ones_like(dwa)).detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}, period={self.period!r}"
