"""GradDrop: keep, per coordinate, the gradients of one sign chosen by sign purity (Chen et al., 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import GradientAggregator

__all__ = ["GradDrop"]


class GradDrop(GradientAggregator):
    r"""Gradient sign dropout: per coordinate, drop the task gradients of the less popular sign.

    With the sign purity :math:`P = \tfrac12\bigl(1 + \sum_t g_t / \sum_t |g_t|\bigr)` and
    :math:`U \sim \mathcal U(0, 1)`, both per coordinate:

    .. math::
        M_t = \mathbb 1[P > U]\,\mathbb 1[g_t > 0] + \mathbb 1[P < U]\,\mathbb 1[g_t < 0],
        \qquad d = \sum_t \bigl(\ell_t + (1-\ell_t) M_t\bigr)\, g_t

    (:math:`\ell_t` the leak, default 0). Positive coordinates survive with probability
    :math:`P`, negative ones with :math:`1-P`.

    Args:
        leak: optional per-task leak :math:`\ell_t \in [0, 1]` (a sequence of ``T`` numbers).
        generator: optional ``torch.Generator`` for :math:`U` (on the gradients' device); ``None``
            uses the global RNG (``torch.rand`` of the shape of :math:`P`, as TorchJD and LibMTL).
        sync: see :class:`GradientAggregator`.

    Memory: not a Gramian method: it needs every task's full gradient, coordinate by coordinate,
    so it keeps ``T`` gradients (plus one in flight). The paper applies it to the gradients with
    respect to the shared *representation*: pass ``shared_representation=`` (LibMTL only
    supports that mode); then the ``T`` gradients are the size of the features.

    Edge behaviour: a coordinate where every gradient is 0 gets 0. The result is random: seed the
    generator for reproducible runs. ``backward`` returns None (there are no task weights).

    Example:
        >>> J = torch.tensor([[1.0, -2.0], [3.0, 4.0]])  # column 0: purity 1, every sign agrees
        >>> d = GradDrop(generator=torch.Generator().manual_seed(0)).aggregate(J)
        >>> float(d[0])
        4.0

    Reference: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai, D. Anguelov,
    "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020.
    """

    needs_gramian = False

    def __init__(
        self,
        *,
        leak: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
        sync: str = "gramian",
    ) -> None:
        super().__init__(max_gradients=None, sync=sync)
        if leak is not None:
            if isinstance(leak, torch.Tensor):
                leak = leak.tolist()
            leak = tuple(float(v) for v in leak)
            if any(not 0.0 <= v <= 1.0 for v in leak):
                raise ValueError(f"leak must hold numbers in [0, 1], got {list(leak)}")
        self.leak = leak
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator

    def combine(self, matrix: torch.Tensor) -> torch.Tensor:
        T = matrix.shape[0]
        if self.leak is not None and len(self.leak) != T:
            raise ValueError(f"leak has {len(self.leak)} entries but {T} task gradients were given")
        m = matrix.detach()
        purity = 0.5 * (1.0 + m.sum(0) / m.abs().sum(0))  # NaN where every entry is 0: masked out
        u = torch.rand(purity.shape, generator=self.generator, dtype=m.dtype, device=m.device)
        keep_pos, keep_neg = purity > u, purity < u
        out = torch.zeros_like(m[0])
        for t in range(T):
            mask = (keep_pos & (m[t] > 0)) | (keep_neg & (m[t] < 0))
            leak = 0.0 if self.leak is None else self.leak[t]
            out += (leak + (1.0 - leak) * mask.to(m.dtype)) * m[t]
        return out
