"""IMTL-G: the update whose projections on every task's unit gradient are equal (Liu et al., 2021)."""

from __future__ import annotations

import numpy as np

from .base import GradientAggregator

__all__ = ["IMTLG"]


class IMTLG(GradientAggregator):
    r"""Impartial MTL, gradient part: a combination with equal projections on every task direction.

    Find :math:`d = \sum_t w_t g_t` with :math:`\sum_t w_t = 1` and
    :math:`d \cdot u_t` equal for all tasks, :math:`u_t = g_t / \lVert g_t \rVert`. With
    :math:`n = (\lVert g_t\rVert)_t` this is :math:`G w \propto n`:

    .. math::
        w = \frac{G^{+} n}{\mathbf 1^\top G^{+} n}

    (:math:`G^+` the pseudo-inverse), which for linearly independent gradients is the paper's
    closed form :math:`\alpha_{2:T} = g_1 U^\top (D U^\top)^{-1}`,
    :math:`U = (u_1 - u_t)_t`, :math:`D = (g_1 - g_t)_t`, and extends it to dependent ones (as
    TorchJD's ``IMTLG``). Rescaling one task's loss by a constant does not change :math:`d`: the
    equal-projection condition only sees the unit directions :math:`u_t`.

    Args:
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients at once.

    Edge behaviour: if :math:`\mathbf 1^\top G^+ n` is ~0 (< 1e-12) the weights are 0 (as TorchJD).

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
        >>> d = IMTLG().aggregate(J)
        >>> d  # projections on e1 and e2 are both 0.75
        tensor([0.7500, 0.7500])

    Reference: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards
    Impartial Multi-task Learning", ICLR 2021. LibMTL's ``IMTL`` also learns IMTL-L loss scales
    (:math:`e^{s_t} L_t - s_t`) before the gradient step; use :class:`~losskit.multitask.
    UncertaintyWeighting`-style scales separately if you want that part.
    """

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        n = np.sqrt(np.clip(np.diag(G), 0.0, None))
        v = np.linalg.pinv(G) @ n
        total = v.sum()
        return np.zeros_like(v) if abs(total) < 1e-12 else v / total
