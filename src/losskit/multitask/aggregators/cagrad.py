"""CAGrad: the best worst-case improvement within a ball around the mean gradient (Liu et al., 2021)."""

from __future__ import annotations

import numpy as np

from ._solvers import cagrad_weights
from .base import GradientAggregator, check_unit

__all__ = ["CAGrad"]

_RESCALES = (0, 1, 2)


class CAGrad(GradientAggregator):
    r"""Conflict-averse gradient descent: maximise the least task improvement near the mean gradient.

    With :math:`g_0 = \frac1T\sum_t g_t`, the primal problem
    :math:`\max_d \min_t g_t\cdot d` s.t. :math:`\lVert d - g_0\rVert \le c\lVert g_0\rVert` has
    the dual solution

    .. math::
        w = \operatorname*{arg\,min}_{w\in\Delta_T}\ g_w^\top g_0 + c\lVert g_0\rVert\,\lVert g_w\rVert,
        \quad g_w = \sum_t w_t g_t, \qquad
        d = \Bigl(g_0 + \frac{c\lVert g_0\rVert}{\lVert g_w\rVert}\, g_w\Bigr) / s

    with :math:`s = 1 + c^2` (``rescale=1``, the official default), :math:`1 + c`
    (``rescale=2``) or 1 (``rescale=0``). :math:`c = 0` gives the mean gradient. The dual is solved
    by bisection on :math:`\tau = \lVert g_w\rVert` with an exact simplex QP at each point
    (float64), not with scipy's SLSQP or cvxpy.

    Args:
        c: radius :math:`c \ge 0` of the ball, relative to :math:`\lVert g_0\rVert` (the paper
            uses 0.4 to 0.5).
        rescale: 0, 1 (default) or 2, as the official code.
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients at once.

    Edge behaviour: when the optimum has :math:`g_w = 0` (the mean is itself conflict-free within
    the ball and :math:`c \ge 1`) the direction is :math:`g_0 / s`.

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> CAGrad(c=0.0).aggregate(J)  # c = 0: the mean
        tensor([0.5000, 0.5000])

    Reference: B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, "Conflict-Averse Gradient Descent for
    Multi-task Learning", NeurIPS 2021. TorchJD's ``CAGrad`` is ``rescale=0`` (and needs cvxpy);
    LibMTL's is ``rescale=1`` with ``calpha=c`` and solves with scipy (SLSQP, default tolerance,
    so about 1e-6 agreement).
    """

    def __init__(
        self,
        c: float = 0.4,
        *,
        rescale: int = 1,
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        self.c = check_unit("c", c)
        if rescale not in _RESCALES or isinstance(rescale, bool):
            raise ValueError(f"rescale must be one of {_RESCALES}, got {rescale!r}")
        self.rescale = rescale

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        w, gw_norm, g0_norm = cagrad_weights(G, self.c)
        out = np.full(T, 1.0 / T)
        if gw_norm > 0:
            out = out + (self.c * g0_norm / gw_norm) * w
        divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        return out / divisor

    def extra_repr(self) -> str:
        return f"c={self.c}, rescale={self.rescale}, {super().extra_repr()}"
