"""Dynamic task prioritisation (Guo et al., ECCV 2018)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import torch

from .._checks import check_int, check_range
from .base import MultiTaskWeighting, mean_over_ranks, per_task_floats

__all__ = ["DynamicTaskPrioritization"]


class DynamicTaskPrioritization(MultiTaskWeighting):
    r"""Weight tasks by how badly they are doing: a focal weight of a smoothed per-task KPI.

    The user reports a key performance indicator :math:`\kappa_t \in [0, 1]` per task (higher is
    better: accuracy, mAP, IoU, the fraction of depth pixels within a threshold, …) through
    :meth:`update_kpis`, each step or after each evaluation. The KPIs are smoothed by an
    exponential moving average and turned into task weights by the focal-loss modulation:

    .. math::
        \bar\kappa_t \leftarrow \alpha\,\kappa_t + (1-\alpha)\,\bar\kappa_t
        \quad(\text{the first update sets } \bar\kappa_t = \kappa_t),
        \qquad
        w_t = -(1-\hat\kappa_t)^{\gamma_t}\,\log\hat\kappa_t,
        \quad \hat\kappa_t = \operatorname{clamp}(\bar\kappa_t, \varepsilon, 1-\varepsilon)

    and ``total = Σ_t w_t · L_t``. Harder tasks (low KPI) get larger weights; :math:`\gamma_t`
    sets how strongly easy tasks are down-weighted. The weights are not learned and carry no
    gradient; the paper pairs them with focal loss inside each task (example-level
    prioritisation): pass focal losses as the :math:`L_t`.

    Args:
        num_tasks: number of tasks ``T``.
        gamma: focusing parameter :math:`\gamma_t \ge 0`, one number or one per task (default 2).
        alpha: EMA rate :math:`\alpha \in (0, 1]` (1: no smoothing; default 0.1).
        eps: clamp :math:`\varepsilon \in (0, 0.5)` (default 1e-6).
        warmup_steps: number of :meth:`update_kpis` calls that only feed the EMA; the weights are
            1 until more KPI updates than this have been made (default 0).
        task_names: optional task names (else taken from the first dict of losses or KPIs).

    Edge behaviour: before any KPI update and during warm-up every weight is 1 (the plain sum).
    The clamp matters at the ends: at :math:`\bar\kappa = 1` the weight would be exactly 0 (the
    task would be dropped for good) and at :math:`\bar\kappa = 0` it would be infinite
    (:math:`-\log 0`); with :math:`\varepsilon = 10^{-6}` they become
    :math:`\approx 10^{-6(\gamma+1)}` and :math:`-\log 10^{-6} \approx 13.8`. The weights are not
    normalised (as in the paper): with :math:`\gamma = 2` they are at most 0.6 once
    :math:`\bar\kappa \ge 0.3`, so retune the learning rate against the plain sum. The EMA and the
    update counter (hence the warm-up state) are buffers (saved in the ``state_dict``).

    Example:
        >>> dtp = DynamicTaskPrioritization(2, gamma=2.0, alpha=0.5)
        >>> dtp.weights  # no KPI yet
        tensor([1., 1.])
        >>> _ = dtp.update_kpis([0.9, 0.5])
        >>> dtp.weights  # -(1 - κ)^2 · log κ
        tensor([0.0011, 0.1733])
        >>> _ = dtp.update_kpis([0.7, 0.5])  # EMA: κ̄ = (0.8, 0.5)
        >>> dtp([torch.tensor(1.0), torch.tensor(1.0)])
        tensor(0.1822)

    Reference: M. Guo, A. Haque, D.-A. Huang, S. Yeung, L. Fei-Fei, "Dynamic Task Prioritization
    for Multitask Learning", ECCV 2018.
    """

    gamma: torch.Tensor
    kpi_ema: torch.Tensor
    num_updates: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        gamma: float | Sequence[float] = 2.0,
        alpha: float = 0.1,
        eps: float = 1e-6,
        warmup_steps: int = 0,
        task_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(num_tasks, task_names)
        gammas = per_task_floats("gamma", gamma, self.num_tasks, low=0.0)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0, low_inclusive=False)
        self.eps = check_range("eps", eps, 0.0, 0.5, low_inclusive=False, high_inclusive=False)
        self.warmup_steps = check_int("warmup_steps", warmup_steps)
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.register_buffer("gamma", torch.tensor(gammas), persistent=False)
        self.register_buffer("kpi_ema", torch.zeros(self.num_tasks))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_kpis(
        self,
        kpis: Sequence[float | torch.Tensor] | Mapping[str, float | torch.Tensor] | torch.Tensor,
    ) -> torch.Tensor:
        """Fold one KPI per task (each in [0, 1]) into the moving average; return the new weights.

        ``kpis``: a sequence or dict of numbers or 0-D tensors, or a 1-D tensor with one entry
        per task. A wrong count or a value outside [0, 1] (NaN included) raises ``ValueError``.
        """
        entries = self._task_entries(kpis, "kpis")
        values = []
        for label, v in entries:
            if isinstance(v, torch.Tensor):
                if v.dim() != 0:
                    raise ValueError(
                        f"{label} must be a number or a 0-D tensor, got shape {tuple(v.shape)}"
                    )
                if v.dtype == torch.bool or v.is_complex():
                    raise TypeError(f"{label} must be a real number, got dtype {v.dtype}")
                f = v.item()  # KPIs arrive once per step or evaluation: the device read is cheap
            elif isinstance(v, numbers.Real) and not isinstance(v, bool):
                f = float(v)  # numpy scalars included
            else:
                raise TypeError(f"{label} must be a real number, got {type(v).__name__}")
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"{label} must be a KPI in [0, 1], got {f!r}")
            values.append(f)
        k = torch.tensor(values, dtype=self.kpi_ema.dtype, device=self.kpi_ema.device)
        k = mean_over_ranks(k)  # every rank folds in the same (global) KPIs
        first = self.num_updates == 0
        self.kpi_ema.copy_(
            torch.where(first, k, self.alpha * k + (1.0 - self.alpha) * self.kpi_ema)
        )
        self.num_updates += 1
        return self.weights

    @property
    def kpis(self) -> torch.Tensor:
        """The smoothed KPIs :math:`\\bar\\kappa_t` (zeros before the first update), detached."""
        return self.kpi_ema.detach().clone()

    @property
    def weights(self) -> torch.Tensor:
        k = self.kpi_ema.clamp(self.eps, 1.0 - self.eps)
        focal = -torch.pow(1.0 - k, self.gamma) * torch.log(k)
        # where() rather than an if: no device read on the hot path.
        active = self.num_updates > self.warmup_steps
        return torch.where(active, focal, torch.ones_like(focal)).detach()

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights.to(losses.dtype) * losses).sum()

    def extra_repr(self) -> str:
        g = self.gamma.tolist()
        gamma = g[0] if len(set(g)) == 1 else g
        return (
            f"{super().extra_repr()}, gamma={gamma}, alpha={self.alpha}, eps={self.eps}, "
            f"warmup_steps={self.warmup_steps}"
        )
