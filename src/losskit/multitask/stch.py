"""STCH: the smooth Tchebycheff scalarisation of the task losses (Lin et al., 2024)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_range
from .base import MultiTaskWeighting, per_task_floats

__all__ = ["STCH"]


class STCH(MultiTaskWeighting):
    r"""Smooth Tchebycheff: a soft maximum of the preference-weighted losses.

    .. math::
        \mathcal L = \mu \log \sum_t \exp\Bigl(\frac{p_t (L_t - z^*_t)}{\mu}\Bigr), \qquad
        \frac{\partial\mathcal L}{\partial L_t} = p_t\,
        \operatorname{softmax}_t\Bigl(\frac{p (L - z^*)}{\mu}\Bigr)

    As :math:`\mu \to 0` it becomes the Tchebycheff scalarisation
    :math:`\max_t p_t (L_t - z^*_t)` (train the worst task only), which reaches every Pareto
    optimal point, convex front or not; :math:`\mu` smooths it so that gradient methods converge.
    Computed with the log-sum-exp shift, so large losses do not overflow. Loss-level: one
    backward, nothing learned.

    Args:
        num_tasks: number of tasks ``T``.
        mu: smoothing :math:`\mu > 0` (default 1.0; small values follow the worst task closely,
            so normalise the losses' scales first, e.g. with ``ideal`` and ``pref_vector``).
        pref_vector: preferences :math:`p_t \ge 0`, one number or one per task (default 1).
        ideal: ideal point :math:`z^*_t`, one number or one per task (default 0).
        task_names: optional task names.

    Edge behaviour: ``weights`` gives :math:`\partial\mathcal L / \partial L_t` of the last call
    (:math:`p_t / T` before the first one); they sum to 1 when all :math:`p_t = 1`.

    Example:
        >>> stch = STCH(2, mu=0.1)
        >>> stch([torch.tensor(1.0), torch.tensor(3.0)])  # ≈ max = 3
        tensor(3.)
        >>> stch.weights  # nearly all on the worst task
        tensor([2.0612e-09, 1.0000e+00])

    Reference: X. Lin, X. Zhang, Z. Yang, F. Liu, Z. Wang, Q. Zhang, "Smooth Tchebycheff
    Scalarization for Multi-Objective Optimization", ICML 2024. LibMTL's ``STCH`` first trains on
    :math:`\sum_t \log L_t` for warm-up epochs, then applies this to
    :math:`\log(L_t / \bar L_t)` (:math:`\bar L_t` the warm-up mean, its "nadir") and multiplies by
    :math:`T`; pass those transformed losses to reproduce it.
    """

    pref: torch.Tensor
    ideal: torch.Tensor
    last_weights: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        mu: float = 1.0,
        pref_vector: float | Sequence[float] = 1.0,
        ideal: float | Sequence[float] = 0.0,
        task_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(num_tasks, task_names)
        self.mu = check_range("mu", mu, 0.0, low_inclusive=False)
        if not math.isfinite(self.mu):
            raise ValueError(f"mu must be finite, got {mu!r}")
        pref = per_task_floats("pref_vector", pref_vector, self.num_tasks, low=0.0)
        self.register_buffer("pref", torch.tensor(pref), persistent=False)
        ideal_values = per_task_floats("ideal", ideal, self.num_tasks)
        self.register_buffer("ideal", torch.tensor(ideal_values), persistent=False)
        self.register_buffer("last_weights", self.pref / self.num_tasks)

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        scaled = self.pref.to(losses.dtype) * (losses - self.ideal.to(losses.dtype)) / self.mu
        total = self.mu * torch.logsumexp(scaled, dim=0)
        with torch.no_grad():
            self.last_weights.copy_(self.pref * torch.softmax(scaled.detach(), dim=0))
        return total

    @property
    def weights(self) -> torch.Tensor:
        return self.last_weights.detach().clone()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mu={self.mu}"
