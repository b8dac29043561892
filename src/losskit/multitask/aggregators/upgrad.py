"""UPGrad: average of the task gradients projected onto the dual cone of all of them (TorchJD)."""

from __future__ import annotations

import numpy as np

from ._prefs import check_pref_vector, preference
from ._solvers import qp_nonneg
from .base import GradientAggregator, check_unit

__all__ = ["UPGrad"]


class UPGrad(GradientAggregator):
    r"""Unconflicting projection of gradients: a direction that conflicts with no task.

    Each task gradient is projected onto the dual cone
    :math:`\{x : g_t \cdot x \ge 0\ \forall t\}` and the projections are averaged with the task
    preferences :math:`p`:

    .. math::
        d = \sum_i p_i\, \pi(g_i), \qquad
        \pi(g_i) = \operatorname*{arg\,min}_{x:\ Jx \ge 0} \lVert x - g_i\rVert^2
        = J^\top (e_i + \lambda_i), \quad
        \lambda_i = \operatorname*{arg\,min}_{\lambda \ge 0}\ \tfrac12 \lambda^\top G \lambda
        + \lambda^\top G e_i

    so :math:`J d \ge 0`: the update does not increase any task loss to first order, and it
    equals the mean gradient when no pair conflicts. Each of the :math:`T` small non-negative
    QPs is solved exactly by an active-set method (float64), without quadprog.

    Args:
        pref_vector: :math:`p` (default :math:`1/T` each).
        norm_eps, reg_eps: solve on :math:`G/\operatorname{tr}G + \varepsilon_{reg} I` (and on
            :math:`\varepsilon_{reg} I` when :math:`\operatorname{tr} G < \varepsilon_{norm}`),
            as TorchJD does to keep quadprog's matrix positive definite. Default 0 and 0: the
            exact projection (TorchJD's defaults are 1e-4 and 1e-4; pass them to reproduce it;
            a positive ``reg_eps`` allows conflicts of order ``reg_eps``).
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients of the
    shared parameters at once (TorchJD's ``autojac`` backward holds the whole Jacobian).

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> d = UPGrad().aggregate(J)
        >>> d, J @ d  # no task's first-order change is negative
        (tensor([0.2500, 0.7500]), tensor([0.2500, 0.5000]))

    Reference: P. Quinton, V. Rey, "Jacobian Descent for Multi-Objective Optimization",
    arXiv:2406.16232 (2024); TorchJD's ``UPGrad``.
    """

    def __init__(
        self,
        *,
        pref_vector=None,
        norm_eps: float = 0.0,
        reg_eps: float = 0.0,
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        self.pref_vector = check_pref_vector(pref_vector)
        self.norm_eps = check_unit("norm_eps", norm_eps)
        self.reg_eps = check_unit("reg_eps", reg_eps)

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        p = preference(self.pref_vector, T)
        trace = float(np.trace(G))
        Q = np.zeros_like(G) if trace < self.norm_eps or trace <= 0 else G / trace
        Q = Q + self.reg_eps * np.eye(T)
        w = np.zeros(T)
        for i in range(T):
            if p[i] == 0:
                continue
            lam = qp_nonneg(Q, Q[:, i] * p[i])  # the projection of p_i g_i (positively homogeneous)
            w += lam
            w[i] += p[i]
        return w

    def extra_repr(self) -> str:
        return f"norm_eps={self.norm_eps}, reg_eps={self.reg_eps}, {super().extra_repr()}"
