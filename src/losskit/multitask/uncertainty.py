"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .base import MultiTaskWeighting, per_task_floats

__all__ = ["UncertaintyWeighting"]

_FORMS = ("kendall", "simplified")
_TASK_TYPES = ("regression", "classification")


class UncertaintyWeighting(MultiTaskWeighting):
    r"""Weight each task loss by a learned homoscedastic uncertainty (Kendall et al., 2018).

    One learned log-variance :math:`s_t = \log\sigma_t^2` per task (the ``nn.Parameter``
    ``log_vars``; learning the log keeps :math:`\sigma^2 > 0` and the optimisation unconstrained).

    ``form="kendall"`` (default, the paper's eqs. 7 and 10):

    .. math::
        \text{regression: } \tfrac12 e^{-s_t} L_t + \tfrac12 s_t
            = \frac{L_t}{2\sigma_t^2} + \log\sigma_t, \qquad
        \text{classification: } e^{-s_t} L_t + \tfrac12 s_t = \frac{L_t}{\sigma_t^2} + \log\sigma_t

    ``form="simplified"`` (what most code, including the blog post losskit started from, uses):
    :math:`e^{-s_t} L_t + s_t = L_t/\sigma_t^2 + 2\log\sigma_t` for every task.

    How the forms differ. Setting the derivative in :math:`s_t` to zero for a fixed loss gives the
    optimum :math:`s_t^* = \log L_t` for the Kendall regression term, :math:`s_t^* = \log 2L_t`
    for the Kendall classification term and :math:`s_t^* = \log L_t` for the simplified term. The
    simplified term is exactly twice the Kendall regression term (same optimum, twice the gradient
    to the network); against the Kendall classification term it counts :math:`\log\sigma` twice,
    which pulls :math:`\sigma^2` down from :math:`2L` to :math:`L`. At the optimum every task's
    weighted loss :math:`w_t L_t` is 1/2 under the Kendall forms and 1 under the simplified form,
    so the forms agree on the *relative* weights at equilibrium but differ by a factor of two in the
    overall scale (an effective learning-rate change) and in how fast the weights move.

    Args:
        task_types: ``"regression"`` or ``"classification"`` per task: a sequence, or a dict
            ``task name -> type`` (the names then key the losses). Only used by ``form="kendall"``.
        form: ``"kendall"`` or ``"simplified"``.
        init_log_vars: initial :math:`s_t`, one number or one per task (default 0, i.e.
            :math:`\sigma^2 = 1`).

    Attributes:
        log_vars: the learned :math:`s_t`, shape ``(T,)``.
        weights: the effective multiplier of each :math:`L_t` (:math:`\tfrac12 e^{-s_t}`,
            :math:`e^{-s_t}` or :math:`e^{-s_t}`), detached.

    Edge behaviour: the total contains :math:`\tfrac12 s_t` (or :math:`s_t`) and may be negative. A
    task whose loss goes to 0 drives :math:`s_t \to -\infty` (weight :math:`\to\infty`); a negative
    loss (e.g. a Gaussian NLL) makes the objective unbounded below in :math:`s_t`. Keep
    ``log_vars`` out of weight decay, and give them to the optimizer (``strategy.parameters()``)
    unless the strategy is a submodule of the model.

    Example:
        >>> uw = UncertaintyWeighting({"depth": "regression", "seg": "classification"})
        >>> total = uw({"depth": torch.tensor(0.8), "seg": torch.tensor(1.2)})
        >>> total  # 0.5·0.8 + 1.2 with s = 0
        tensor(1.6000, grad_fn=<SumBackward0>)
        >>> uw.weights
        tensor([0.5000, 1.0000])

    Reference: A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
    Losses for Scene Geometry and Semantics", CVPR 2018.
    """

    log_vars: nn.Parameter
    loss_coef: torch.Tensor
    log_var_coef: torch.Tensor

    def __init__(
        self,
        task_types: Sequence[str] | Mapping[str, str],
        form: str = "kendall",
        init_log_vars: float | Sequence[float] = 0.0,
    ) -> None:
        if isinstance(task_types, Mapping):
            names: list[str] | None = list(task_types.keys())
            types = list(task_types.values())
            labels = [f"task_types[{n!r}]" for n in names]
        elif isinstance(task_types, Sequence) and not isinstance(task_types, (str, bytes)):
            names, types = None, list(task_types)
            labels = [f"task_types[{i}]" for i in range(len(types))]
        else:
            raise TypeError(
                "task_types must be a sequence of 'regression'/'classification' or a dict "
                f"name -> type, got {task_types!r}"
            )
        if not types:
            raise ValueError("task_types must name at least one task, got an empty collection")
        for label, t in zip(labels, types, strict=True):
            if t not in _TASK_TYPES:
                raise ValueError(f"{label} must be one of {_TASK_TYPES}, got {t!r}")
        if form not in _FORMS:
            raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
        super().__init__(len(types), names)
        self.form = form
        self.task_types = tuple(types)
        init = per_task_floats("init_log_vars", init_log_vars, self.num_tasks)
        self.log_vars = nn.Parameter(torch.tensor(init))
        if form == "kendall":
            loss_coef = [0.5 if t == "regression" else 1.0 for t in types]
            log_var_coef = [0.5] * self.num_tasks
        else:
            loss_coef = log_var_coef = [1.0] * self.num_tasks
        # Constants of the form, not state: they follow .to() but stay out of the state_dict.
        self.register_buffer("loss_coef", torch.tensor(loss_coef), persistent=False)
        self.register_buffer("log_var_coef", torch.tensor(log_var_coef), persistent=False)

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        s = self.log_vars.to(losses.dtype)
        a = self.loss_coef.to(losses.dtype)
        b = self.log_var_coef.to(losses.dtype)
        return (a * torch.exp(-s) * losses + b * s).sum()

    @property
    def weights(self) -> torch.Tensor:
        return (self.loss_coef * torch.exp(-self.log_vars)).detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, task_types={list(self.task_types)}, form={self.form!r}"
