"""Aligned-MTL: make the task gradients' principal components equal (Senushkin et al., 2023)."""

from __future__ import annotations

import numpy as np

from ._prefs import check_pref_vector, preference
from .base import GradientAggregator

__all__ = ["AlignedMTL"]

_SCALES = ("min", "median", "rmse")


class AlignedMTL(GradientAggregator):
    r"""Aligned-MTL: replace the task gradients by a well-conditioned system with the same directions.

    With the eigen-decomposition :math:`G = V \Lambda V^\top` restricted to its rank :math:`r`
    (eigenvalues above :math:`\lambda_{max} T \varepsilon`), the gradient matrix
    :math:`J = V \Lambda^{1/2} U^\top` is replaced by :math:`\hat J = \sigma V U^\top` (all
    singular values equal to :math:`\sigma`, condition number 1) and combined with the task
    preferences :math:`p`:

    .. math::
        d = \hat J^\top p = J^\top B p, \qquad B = \sigma\, V \Lambda^{-1/2} V^\top,
        \qquad \sigma = \sqrt{\lambda_{min}}\ (\text{``min''})

    Args:
        pref_vector: task preferences :math:`p` (default :math:`1/T` each, as TorchJD).
        scale_mode: ``"min"`` (the paper: :math:`\sigma^2` the smallest kept eigenvalue),
            ``"median"`` (the lower median for an even count, as ``torch.median``) or
            ``"rmse"`` (the mean eigenvalue, as the official code).
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients at once.

    Edge behaviour: a zero Gramian gives :math:`B = I` (so :math:`d = J^\top p = 0`).

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
        >>> AlignedMTL().aggregate(J)  # both components rescaled to σ = 1, then averaged
        tensor([0.5000, 0.5000])

    Reference: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component
    Alignment for Multi-Task Learning", CVPR 2023. Same rule as TorchJD's ``AlignedMTL``; LibMTL's
    ``Aligned_MTL`` uses :math:`p = 1` (the sum), i.e. :math:`T` times this direction.
    """

    def __init__(
        self,
        *,
        pref_vector=None,
        scale_mode: str = "min",
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        if scale_mode not in _SCALES:
            raise ValueError(f"scale_mode must be one of {_SCALES}, got {scale_mode!r}")
        self.scale_mode = scale_mode
        self.pref_vector = check_pref_vector(pref_vector)

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        p = preference(self.pref_vector, T)
        lam, V = np.linalg.eigh(G)
        tol = lam.max() * T * np.finfo(np.float64).eps
        keep = lam > tol
        if not keep.any():
            return p
        order = np.argsort(lam)[::-1]
        order = order[keep[order]]
        lam, V = lam[order], V[:, order]
        if self.scale_mode == "min":
            s2 = lam[-1]
        elif self.scale_mode == "median":
            s2 = np.sort(lam)[(len(lam) - 1) // 2]  # the lower median, as torch.median
        else:
            s2 = lam.mean()
        B = np.sqrt(s2) * (V / np.sqrt(lam)) @ V.T
        return B @ p

    def extra_repr(self) -> str:
        return f"scale_mode={self.scale_mode!r}, {super().extra_repr()}"
