"""MGDA: the minimum-norm point of the convex hull of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

import numpy as np

from ._solvers import qp_simplex
from .base import GradientAggregator

__all__ = ["MGDA"]

_NORMALIZATIONS = ("none", "l2")


class MGDA(GradientAggregator):
    r"""Multiple-gradient descent: the shortest vector in the convex hull of the task gradients.

    .. math::
        w = \operatorname*{arg\,min}_{w \in \Delta_T} \Bigl\lVert \sum_t w_t g_t \Bigr\rVert_2^2
          = \operatorname*{arg\,min}_{w \in \Delta_T} w^\top G w, \qquad d = \sum_t w_t g_t

    :math:`d` is a common descent direction (:math:`g_t \cdot d \ge \lVert d\rVert^2` for every
    task) unless it is 0, which happens exactly at a Pareto-stationary point. The QP is solved
    exactly by an active-set method (float64, on the host), not by Frank-Wolfe iterations.
    With ``shared_representation=`` this is MGDA-UB (the paper's upper bound: gradients with
    respect to the shared features, ``T`` cheap passes through the heads).

    Args:
        normalization: ``"none"`` (default) or ``"l2"``: solve on :math:`g_t / \lVert g_t\rVert`
            and use :math:`d = \sum_t w_t g_t / \lVert g_t\rVert` (LibMTL's ``mgda_gn="l2"``).
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients of the
    shared parameters are held at once, plus the ``T × T`` Gramian.

    Edge behaviour: zero gradients give :math:`d = 0`; collinear gradients give a non-unique
    :math:`w` but a unique :math:`d`. ``l2`` normalization gives a zero-norm task weight 0.

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> MGDA().aggregate(J)  # the point of the segment [g1, g2] closest to 0
        tensor([0.8000, 0.4000])

    References: J.-A. Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective
    optimization", C. R. Math. 2012; O. Sener, V. Koltun, "Multi-Task Learning as
    Multi-Objective Optimization", NeurIPS 2018. Peers: TorchJD's ``MGDA`` and LibMTL's ``MGDA``
    stop Frank-Wolfe at a tolerance (TorchJD: step < 1e-3 or 100 iterations; LibMTL: 250
    iterations, 1e-5), so they agree with this exact solution only to about that tolerance.
    LibMTL applies the weights to the *normalised* gradients in parameter mode (as here) but to
    the raw representation gradients with ``rep_grad=True``, and sums its representation
    gradients over the batch before the Gramian (here they are flattened, as in the paper).
    """

    def __init__(
        self, *, normalization: str = "none", max_gradients: int | None = 2, sync: str = "gramian"
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}"
            )
        self.normalization = normalization

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        if self.normalization == "l2":
            norms = np.sqrt(np.clip(np.diag(G), 0.0, None))
            inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
            return qp_simplex(G * np.outer(inv, inv)) * inv
        return qp_simplex(G)

    def extra_repr(self) -> str:
        return f"normalization={self.normalization!r}, {super().extra_repr()}"
