"""GradVac: pull task gradients towards a target cosine similarity (Wang et al., 2021)."""

from __future__ import annotations

import numpy as np
import torch

from .base import GradientAggregator, check_unit

__all__ = ["GradVac"]


class GradVac(GradientAggregator):
    r"""Gradient vaccine: raise each pair's cosine similarity to a moving target, not just to 0.

    For every task :math:`i` and the other tasks :math:`j` in a random order, with
    :math:`\phi_{ij} = \cos(g_i^{GV}, g_j)` and the target :math:`\hat\phi_{ij}` (an exponential
    moving average of past :math:`\phi_{ij}`, starting at 0):

    .. math::
        \text{if } \phi_{ij} < \hat\phi_{ij}:\quad g_i^{GV} \leftarrow g_i^{GV} +
        \frac{\lVert g_i^{GV}\rVert\,(\hat\phi_{ij}\sqrt{1-\phi_{ij}^2} -
        \phi_{ij}\sqrt{1-\hat\phi_{ij}^2})}{\lVert g_j\rVert \sqrt{1-\hat\phi_{ij}^2}}\, g_j,
        \qquad \hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} + \beta\phi_{ij}

    and :math:`d = \sum_i g_i^{GV}`. As for PCGrad, everything is a dot product, so it runs on
    the Gramian (weights :math:`w = \sum_i C_i` with :math:`g_i^{GV} = \sum_k C_{ik} g_k`).
    With :math:`\hat\phi = 0` the correction is exactly PCGrad's projection.

    Args:
        beta: EMA rate :math:`\beta \in [0, 1]` (default 0.5, as LibMTL and TorchJD; the paper
            uses 1e-2).
        eps: added to the norms' products in the denominators (default 1e-8, as TorchJD).
        generator: optional ``torch.Generator`` for the visiting orders (``None``: the global RNG,
            ``torch.randperm(T - 1)`` per task as TorchJD). ``last_order`` holds the last orders.
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients at once.
    State: the targets :math:`\hat\phi` (buffer ``phi_hat``, ``(T, T)``).

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> GradVac().aggregate(J)  # first call: targets 0, the PCGrad result
        tensor([0.5000, 1.5000])

    Reference: Z. Wang, Y. Tsvetkov, O. Firat, Y. Cao, "Gradient Vaccine: Investigating and
    Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021. Whole-model
    variant (LibMTL's ``GradVac_group_type=0``); no per-layer grouping.
    """

    phi_hat: torch.Tensor

    def __init__(
        self,
        *,
        beta: float = 0.5,
        eps: float = 1e-8,
        generator: torch.Generator | None = None,
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        self.beta = check_unit("beta", beta, high=1.0)
        self.eps = check_unit("eps", eps)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator
        self.last_order: list[list[int]] | None = None
        self.register_buffer("phi_hat", torch.zeros(0, 0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        saved = state_dict.get(prefix + "phi_hat")
        if isinstance(saved, torch.Tensor):
            self.phi_hat = torch.zeros_like(saved, dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        if self.phi_hat.shape != (T, T):
            self.phi_hat = torch.zeros(T, T, dtype=torch.float64)
        phi_hat = self.phi_hat.numpy()  # shares memory: updated in place
        C = np.eye(T)
        orders = []
        for i in range(T):
            others = [j for j in range(T) if j != i]
            order = [others[k] for k in torch.randperm(T - 1, generator=self.generator).tolist()]
            orders.append(order)
            cG = C[i] @ G
            for j in order:
                norm_i = np.sqrt(max(cG @ C[i], 0.0))
                norm_j = np.sqrt(max(G[j, j], 0.0))
                phi = cG[j] / (norm_i * norm_j + self.eps)
                target = phi_hat[i, j]
                if phi < target:
                    root_phi = np.sqrt(max(1.0 - phi * phi, 0.0))
                    root_target = np.sqrt(max(1.0 - target * target, 0.0))
                    coef = norm_i * (target * root_phi - phi * root_target)
                    coef /= norm_j * root_target + self.eps
                    C[i, j] += coef
                    cG = cG + coef * G[j]
                phi_hat[i, j] = (1.0 - self.beta) * target + self.beta * phi
        self.last_order = orders
        return C.sum(axis=0)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, eps={self.eps}, {super().extra_repr()}"
