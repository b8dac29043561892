"""Nash-MTL: the Nash bargaining solution of the tasks (Navon et al., 2022), solved without cvxpy."""

from __future__ import annotations

import math

import numpy as np
import torch

from ._checks_shim import check_positive_int
from ._solvers import nash_bargaining
from .base import GradientAggregator, check_unit

__all__ = ["NashMTL"]


class NashMTL(GradientAggregator):
    r"""Nash-MTL: weights :math:`\alpha > 0` with :math:`\alpha_t\,(G\alpha)_t = 1` for every task.

    The bargaining solution of the paper (its eq. 3) is the direction
    :math:`d = \sum_t \alpha_t g_t` whose gain for task :math:`t`,
    :math:`g_t \cdot d = (G\alpha)_t`, equals :math:`1/\alpha_t`. It is the unique minimiser of
    the strictly convex

    .. math::
        f(\alpha) = \tfrac12\, \alpha^\top \tilde G \alpha - \sum_t \log \alpha_t,
        \qquad \tilde G = G / \lVert G \rVert_F \ (\text{``normalize=True``})

    found here by damped Newton iterations (float64, converged to the Newton decrement
    < 1e-24, i.e. exactly) instead of the paper's sequence of convex programs (CCP) solved with
    cvxpy. Like the official code, the Gramian is normalised by its Frobenius norm before the
    solve (so :math:`d` scales like the gradients) and :math:`d` is clipped to ``max_norm``.

    Args:
        max_norm: clip :math:`\lVert d\rVert` to this value (``0`` disables; default 1.0 as in the
            official code and TorchJD; note the clip is in the units of the *unscaled*
            gradients, which is why AMP's scale must be undone first).
        normalize: divide the Gramian by its Frobenius norm before solving (default True).
        update_weights_every: reuse the last :math:`\alpha` for this many calls (default 1).
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients at once.
    State: the last :math:`\alpha` (buffer ``alpha``, the warm start) and the call counter.

    Edge behaviour: the solution exists for linearly independent gradients (the paper's
    assumption). Otherwise a ridge of 1e-12 of the mean diagonal keeps it finite, and tasks whose
    gradients cancel get large weights on a zero combined gradient.

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> NashMTL(normalize=False, max_norm=0).aggregate(J)  # α = (1, 1/2): g·d = 1/α
        tensor([1., 1.])

    Reference: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik,
    E. Fetaya, "Multi-Task Learning as a Bargaining Game", ICML 2022. Differences from the
    official code (and TorchJD's copy, which needs cvxpy/ECOS): the CCP stops after at most 20
    convex programs or when :math:`\lVert G\alpha - 1/\alpha\rVert < 10^{-3}`, so its
    :math:`\alpha` is an approximation of the one solved for exactly here.
    """

    alpha: torch.Tensor
    num_calls: torch.Tensor

    def __init__(
        self,
        *,
        max_norm: float = 1.0,
        normalize: bool = True,
        update_weights_every: int = 1,
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        self.max_norm = check_unit("max_norm", max_norm)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        self.update_weights_every = check_positive_int("update_weights_every", update_weights_every)
        self.register_buffer("alpha", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("num_calls", torch.zeros((), dtype=torch.long))

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        prev = self.alpha.numpy() if self.alpha.numel() == T else None
        if prev is None or int(self.num_calls) % self.update_weights_every == 0:
            norm = float(np.linalg.norm(G)) if self.normalize else 1.0
            a = nash_bargaining(G / norm if norm > 0 else G, start=prev)
            self.alpha = torch.from_numpy(a.copy())
        else:
            a = prev.copy()
        self.num_calls += 1
        if self.max_norm > 0:
            d_norm = math.sqrt(max(float(a @ G @ a), 0.0))
            if d_norm > self.max_norm:
                a = a * (self.max_norm / d_norm)
        return a

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The warm start has one entry per task, unknown until the first call: take the saved size.
        saved = state_dict.get(prefix + "alpha")
        if isinstance(saved, torch.Tensor):
            self.alpha = torch.zeros_like(saved, dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"max_norm={self.max_norm}, normalize={self.normalize}, "
            f"update_weights_every={self.update_weights_every}, {super().extra_repr()}"
        )
