"""FAMO: fast adaptive multitask optimisation, a loss-level method with O(1) cost (Liu et al., 2023)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_range
from .base import MultiTaskWeighting, TaskLosses, mean_over_ranks, per_task_floats

__all__ = ["FAMO"]

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_LOG_EPS = 1e-8  # the official code's offset inside the logarithms


class FAMO(MultiTaskWeighting):
    r"""Balance the tasks' *log*-loss decrease with one backward per step (FAMO).

    With logits :math:`\xi` (a buffer, initialised to 0), :math:`z = \operatorname{softmax}(\xi)`
    and :math:`D_t = L_t - L^*_t + 10^{-8}` (:math:`L^*_t` a lower bound of the loss, default 0):

    .. math::
        \mathcal L = \frac{1}{c}\sum_t z_t \log D_t, \qquad
        c = \sum_t \frac{z_t}{D_t}\ (\text{a constant}), \qquad
        \frac{\partial \mathcal L}{\partial L_t} = \frac{z_t}{c\,D_t}

    so the update direction is a convex combination of the :math:`\nabla \log L_t`. After the
    optimizer step, :meth:`update` is given the losses of the *same batch* under the updated
    model; with :math:`\delta_t = \log D_t^{before} - \log D_t^{after}` the logits take one Adam
    step (weight decay :math:`\gamma`) along :math:`\nabla_\xi\, z(\xi)^\top \delta`, which raises
    the weight of the tasks whose log-loss fell least. One backward per step: no per-task
    gradients, no Gramian (the paper's point), but one extra forward for :meth:`update`.

    Args:
        num_tasks: number of tasks ``T``.
        lr: learning rate of the logits' Adam (default 0.025, as the official code).
        weight_decay: :math:`\gamma` (default 0.01, as the official code).
        min_losses: :math:`L^*_t`, one number or one per task (default 0).
        task_names: optional task names.

    Edge behaviour: losses must be >= :math:`L^*_t` (checked with the value checks). :meth:`update`
    without a training call since the last update raises ``RuntimeError``. The logits, the Adam
    state and the pending losses are buffers (saved in the ``state_dict``). Under
    ``torch.distributed`` the losses given to :meth:`update` and the recorded ones are averaged
    over the ranks, so every rank's logits agree. ``weights`` gives :math:`z_t / (c D_t)` of the
    last call. The official code also clips the shared gradient norm to 1; do that yourself
    (``torch.nn.utils.clip_grad_norm_``) to reproduce it.

    Example:
        >>> famo = FAMO(2)
        >>> total = famo([torch.tensor(2.0), torch.tensor(0.5)])
        >>> famo.weights  # z = (1/2, 1/2): multipliers ∝ 1/L, summing to 1 over c
        tensor([0.2000, 0.8000])
        >>> famo.update([torch.tensor(1.0), torch.tensor(0.45)])  # task 0 improved more
        >>> bool(famo.logits[1] > famo.logits[0])
        True

    Reference: B. Liu, Y. Feng, P. Stone, Q. Liu, "FAMO: Fast Adaptive Multitask Optimization",
    NeurIPS 2023 (Algorithm 1 and the official code).
    """

    logits: torch.Tensor
    min_losses: torch.Tensor
    prev_losses: torch.Tensor
    has_prev: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    adam_step: torch.Tensor
    last_weights: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        lr: float = 0.025,
        weight_decay: float = 0.01,
        min_losses: float | Sequence[float] = 0.0,
        task_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(num_tasks, task_names)
        self.lr = check_range("lr", lr, 0.0, low_inclusive=False)
        self.weight_decay = check_range("weight_decay", weight_decay, 0.0)
        if not (math.isfinite(self.lr) and math.isfinite(self.weight_decay)):
            raise ValueError(f"lr and weight_decay must be finite, got {lr!r}, {weight_decay!r}")
        T = self.num_tasks
        self.register_buffer("logits", torch.zeros(T))
        self.register_buffer(
            "min_losses", torch.tensor(per_task_floats("min_losses", min_losses, T))
        )
        self.register_buffer("prev_losses", torch.zeros(T))
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))
        self.register_buffer("exp_avg", torch.zeros(T))
        self.register_buffer("exp_avg_sq", torch.zeros(T))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_weights", torch.full((T,), 1.0 / T))

    def _gaps(self, losses: torch.Tensor) -> torch.Tensor:
        gap = losses - self.min_losses.to(losses.dtype)
        self._check_positive(gap, "FAMO takes log(L - min_losses)", strict=False)
        return gap + _LOG_EPS

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        D = self._gaps(losses)
        z = torch.softmax(self.logits, dim=0).to(losses.dtype)
        c = (z / D).sum().detach()
        total = (torch.log(D) * z / c).sum()
        with torch.no_grad():
            self.last_weights.copy_((z / (c * D)).detach())
            if self.training:
                self.prev_losses.copy_(mean_over_ranks(losses.detach()).to(self.prev_losses))
                self.has_prev.fill_(True)
        return total

    @torch.no_grad()
    def update(self, losses: TaskLosses) -> None:
        """One Adam step of the logits from the same batch's losses after the model's step."""
        if not bool(self.has_prev):
            raise RuntimeError(
                "FAMO.update() needs the losses of a training call first: call famo(losses), "
                "step the model, then famo.update(losses of the same batch under the new model)"
            )
        _, new = self._prepare(losses)
        new = mean_over_ranks(new.detach().to(self.logits.dtype))
        delta = torch.log(self._gaps(self.prev_losses)) - torch.log(self._gaps(new))
        z = torch.softmax(self.logits, dim=0)
        grad = z * (delta - (z * delta).sum())  # (diag z − z zᵀ) δ, the softmax's vjp
        grad = grad + self.weight_decay * self.logits  # torch.optim.Adam's (L2) weight decay
        self.adam_step += 1
        b1, b2 = _BETAS
        self.exp_avg.mul_(b1).add_(grad, alpha=1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        t = int(self.adam_step)
        denom = (self.exp_avg_sq / (1 - b2**t)).sqrt().add_(_ADAM_EPS)
        self.logits.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - b1**t))
        self.has_prev.fill_(False)

    @property
    def weights(self) -> torch.Tensor:
        return self.last_weights.detach().clone()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lr={self.lr}, weight_decay={self.weight_decay}"
