"""Random loss weighting (Lin et al., 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import MultiTaskWeighting

__all__ = ["RandomLossWeighting"]


class RandomLossWeighting(MultiTaskWeighting):
    r"""Weight the task losses by a fresh random point of the simplex at every call (RLW).

    .. math::
        z_t \sim \mathcal N(0, 1) \text{ i.i.d.}, \qquad
        w = \operatorname{softmax}(z), \qquad \text{total} = \sum_t w_t L_t

    The weights sum to 1 (so the total is on the scale of the mean of the losses, as in the
    paper); their expectation is :math:`1/T` for every task. The paper's point is that this
    random baseline is surprisingly hard to beat by the adaptive strategies.

    Args:
        num_tasks: number of tasks ``T``.
        generator: optional ``torch.Generator`` for reproducible weights. The samples are drawn
            on the generator's device (the losses' device when there is none, using the global RNG)
            and moved to the losses' device.
        task_names: optional task names (else taken from the first dict of losses).

    Edge behaviour: weights are drawn only in training mode; in eval mode the call uses their
    expectation :math:`1/T` (the mean), so validation totals are not noisy. ``weights`` gives the
    weights of the last training call (``1/T`` before the first one); they are a buffer, saved
    in the ``state_dict``. The generator's state is not: save ``generator.get_state()`` yourself
    to resume the exact sequence.

    Example:
        >>> rlw = RandomLossWeighting(3, generator=torch.Generator().manual_seed(0))
        >>> total = rlw([torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)])
        >>> round(float(rlw.weights.sum()), 6)
        1.0

    Reference: B. Lin, F. Ye, Y. Zhang, I. W. Tsang, "Reasonable Effectiveness of Random
    Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022 (arXiv:2111.10603).
    """

    last_weights: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        task_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(num_tasks, task_names)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.generator = generator
        self.register_buffer("last_weights", torch.full((self.num_tasks,), 1.0 / self.num_tasks))

    def sample_weights(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw one weight vector ``softmax(z)``, ``z ~ N(0, I)`` (does not record it)."""
        gen_device = self.generator.device if self.generator is not None else device
        z = torch.randn(self.num_tasks, generator=self.generator, device=gen_device)
        return torch.softmax(z, dim=0)

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        if self.training:
            w = self.sample_weights(losses.device).to(losses.device)
            with torch.no_grad():
                self.last_weights.copy_(w)
        else:
            w = torch.full_like(losses, 1.0 / self.num_tasks)
        return (w.to(losses.dtype) * losses).sum()

    @property
    def weights(self) -> torch.Tensor:
        return self.last_weights.detach().clone()
