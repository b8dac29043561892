"""PCGrad: project each task gradient off the gradients it conflicts with (Yu et al., 2020)."""

from __future__ import annotations

import numpy as np
import torch

from .base import GradientAggregator

__all__ = ["PCGrad"]


class PCGrad(GradientAggregator):
    r"""Gradient surgery: remove from each task gradient its component along conflicting ones.

    For every task :math:`i`, starting from :math:`g_i^{PC} = g_i` and visiting the other tasks
    :math:`j` in a random order:

    .. math::
        \text{if } g_i^{PC} \cdot g_j < 0:\quad
        g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC} \cdot g_j}{\lVert g_j\rVert^2}\, g_j,
        \qquad d = \sum_i g_i^{PC}

    Every :math:`g_i^{PC}` stays a combination :math:`\sum_k C_{ik} g_k` of the original
    gradients and every dot product above is :math:`C_i G_{:,j}`, so the method runs on the
    Gramian alone (as TorchJD's does): the weights are :math:`w = \sum_i C_i`.
    With two tasks no conflicting pair is left: :math:`g_1^{PC}\cdot g_2 \ge 0` and
    :math:`g_2^{PC}\cdot g_1 \ge 0`.

    Args:
        generator: optional ``torch.Generator`` (CPU) for the visiting orders; ``None`` uses the
            global RNG (``torch.randperm(T)`` once per task, as TorchJD, so a seeded run matches
            it). The orders of the last call are in ``last_order`` (task ``i`` visits
            ``last_order[i]``, skipping ``i``).
        max_gradients, sync: see :class:`GradientAggregator`.

    Memory: Gramian-based: at most ``max_gradients`` (default 2) full per-task gradients are held
    at once (the original implementation and LibMTL keep all ``T``, plus ``T`` projected copies).

    Edge behaviour: a zero gradient :math:`g_j` is never projected on. Misuse guard: PCGrad after
    one combined ``backward()`` is a plain sum; ``backward`` therefore refuses a single scalar.

    Example:
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # conflicting: g1·g2 = -1
        >>> PCGrad().aggregate(J)  # g1 + g2/2 projected, g2 + g1 projected
        tensor([0.5000, 1.5000])

    Reference: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for
    Multi-Task Learning", NeurIPS 2020. LibMTL also visits task ``i`` itself (a no-op unless an
    earlier projection turned :math:`g_i^{PC}` against :math:`g_i`) and draws the orders with
    Python's ``random``; results agree given the same orders.
    """

    last_order: list[list[int]] | None

    def __init__(
        self,
        *,
        generator: torch.Generator | None = None,
        max_gradients: int | None = 2,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=max_gradients, sync=sync)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator
        self.last_order = None

    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        T = len(G)
        orders = [torch.randperm(T, generator=self.generator).tolist() for _ in range(T)]
        self.last_order = orders
        C = np.eye(T)
        for i in range(T):
            for j in orders[i]:
                if j == i or G[j, j] <= 0:
                    continue
                dot = C[i] @ G[:, j]
                if dot < 0:
                    C[i, j] -= dot / G[j, j]
        return C.sum(axis=0)
