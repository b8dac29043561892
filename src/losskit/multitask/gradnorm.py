"""GradNorm: balance the tasks' gradient norms at the last shared layer (Chen et al., ICML 2018)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .._checks import check_int, check_range, value_checks_enabled
from .._precision import compute_dtype
from .base import MultiTaskWeighting, TaskLosses, mean_over_ranks

__all__ = ["GradNorm"]

# Weights are clamped here before renormalising, so a large optimizer step cannot make a task's
# weight zero or negative (that would silence or invert its gradient).
_MIN_WEIGHT = 1e-6
_PARAMETRIZATIONS = ("renormalize", "softmax")
_INITIAL_LOSSES = ("first", "epoch_mean")


class GradNorm(MultiTaskWeighting):
    r"""Learn task weights that equalise the tasks' gradient norms, adjusted by training rates.

    With learnable weights :math:`w_t` (``task_weights``, initialised to 1), the shared parameters
    :math:`W` (the last shared layer), :math:`\tilde L_t = L_t / L_t(0)` (the loss relative to its
    value at the first training call) and the relative inverse training rate
    :math:`r_t = \tilde L_t / \operatorname{mean}_i \tilde L_i`:

    .. math::
        G_t = \lVert \nabla_W\, w_t L_t \rVert_2 = w_t \lVert \nabla_W L_t \rVert_2, \qquad
        \bar G = \operatorname{mean}_t G_t, \qquad
        L_\text{grad} = \sum_t \bigl| G_t - \bar G\, r_t^{\alpha} \bigr|

    where the target :math:`\bar G r_t^\alpha` is treated as a constant. The network is trained on
    :math:`\sum_t w_t L_t` (gradient to the network only) and the weights on :math:`L_\text{grad}`
    (gradient to the weights only). Direction: a task whose gradient norm is below the target, i.e.
    one with a small gradient or a loss that decreases more slowly than the others (larger
    :math:`r_t`), gets a larger weight. :math:`\alpha` sets how strongly the training rates count
    (:math:`\alpha = 0`: just equal gradient norms).

    API. ``total = gn(losses)`` returns a tensor whose *value* is :math:`\sum_t w_t L_t` and whose
    backward puts :math:`\nabla \sum_t w_t L_t` on the model's parameters and
    :math:`\partial L_\text{grad} / \partial w` on ``gn.task_weights`` (the returned total is
    :math:`\sum_t \operatorname{sg}(w_t) L_t + L_\text{grad} - \operatorname{sg}(L_\text{grad})`,
    with sg = stop-gradient). So one ``total.backward()`` and one ``optimizer.step()`` over the
    model's parameters *and* ``gn.parameters()`` do a GradNorm step; ``gn.gradnorm_loss`` holds the
    value of :math:`L_\text{grad}` for logging. At the start of each call the weights are clamped at
    1e-6 and renormalised in place to sum to ``T``, as the paper does after each update; the
    ``weights`` property always returns the renormalised values. The per-task norms cost one extra
    backward pass per task down to :math:`W` (not below), without a second-order graph: since
    :math:`G_t = w_t \lVert\nabla_W L_t\rVert`, the norms are constants for the weights' gradient.

    Args:
        num_tasks: number of tasks ``T``.
        shared_parameters: the parameters :math:`W` of the last shared layer (e.g.
            ``model.trunk[-1].parameters()``); their gradients are combined into one norm. They
            are only referenced, not registered (they belong to the model).
        alpha: asymmetry :math:`\alpha \ge 0` (default 1.5).
        task_names: optional task names (else taken from the first dict of losses).
        parametrization: ``"renormalize"`` (default, the paper) or ``"softmax"`` (LibMTL).
        warmup_epochs: number of epochs (closed by :meth:`end_epoch`) trained on the plain sum
            before GradNorm starts (default 0; LibMTL: 1).
        initial_loss: ``"first"`` (default: the losses of the first GradNorm call) or
            ``"epoch_mean"`` (LibMTL: the mean training losses of the first epoch; needs
            ``warmup_epochs >= 1``).

    Edge behaviour: in eval mode or under ``torch.no_grad()`` the call is a plain weighted sum and
    ``gradnorm_loss`` is ``None``. In training, the losses must require grad and each must depend
    on ``shared_parameters`` (else ``ValueError``; given as one 1-D tensor, every entry reaches
    :math:`W` through the stack, so an unrelated loss just gets a zero norm); losses must be >= 0 and the first ones > 0
    (they divide). :math:`L_t(0)` and the step counter are buffers, saved with the weights.
    Give ``gn.parameters()`` no weight decay; a separate learning rate is common.

    LibMTL's variant (to port LibMTL runs): ``GradNorm.libmtl(T, shared)`` or the three options
    ``parametrization="softmax"`` (weights :math:`w = T\operatorname{softmax}(\xi)` of learned
    logits :math:`\xi`, initialised to 1, instead of clamping and renormalising),
    ``warmup_epochs=1`` (during the first epoch the total is the plain sum
    :math:`\sum_t L_t` and nothing is learned) and ``initial_loss="epoch_mean"``
    (:math:`L_t(0)` is the mean training loss of the first epoch, not the first batch's). Call
    :meth:`end_epoch` at the end of every epoch for these. One difference is left: LibMTL gives
    the task-specific parameters the unweighted :math:`\nabla L_t` (it back-propagates each loss
    separately), while here the heads get :math:`w_t \nabla L_t` like the shared parameters
    (with :math:`w_t` near 1 the two agree closely; under Adam the scale of a head's gradient
    hardly matters).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> trunk, heads = nn.Linear(4, 8), nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
        >>> gn = GradNorm(2, shared_parameters=trunk.parameters(), alpha=1.5)
        >>> model_params = [*trunk.parameters(), *heads.parameters()]
        >>> opt = torch.optim.Adam(
        ...     [{"params": model_params}, {"params": gn.parameters(), "lr": 0.01}], lr=1e-3)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 2)
        >>> for _ in range(3):
        ...     h = trunk(x)
        ...     losses = [((heads[t](h).squeeze(1) - y[:, t]) ** 2).mean() for t in range(2)]
        ...     total = gn(losses)
        ...     opt.zero_grad()
        ...     total.backward()
        ...     opt.step()
        >>> round(float(gn.weights.sum()), 5)
        2.0

    Reference: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: Gradient
    Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.
    """

    task_weights: nn.Parameter
    initial_losses: torch.Tensor
    num_steps: torch.Tensor
    gradnorm_loss: torch.Tensor | None

    def __init__(
        self,
        num_tasks: int,
        shared_parameters: Iterable[torch.Tensor] | torch.Tensor,
        alpha: float = 1.5,
        task_names: Sequence[str] | None = None,
        *,
        parametrization: str = "renormalize",
        warmup_epochs: int = 0,
        initial_loss: str = "first",
    ) -> None:
        super().__init__(num_tasks, task_names)
        if parametrization not in _PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {_PARAMETRIZATIONS}, got {parametrization!r}"
            )
        if initial_loss not in _INITIAL_LOSSES:
            raise ValueError(f"initial_loss must be one of {_INITIAL_LOSSES}, got {initial_loss!r}")
        warmup_epochs = check_int("warmup_epochs", warmup_epochs)
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if initial_loss == "epoch_mean" and warmup_epochs < 1:
            raise ValueError(
                "initial_loss='epoch_mean' needs warmup_epochs >= 1: L(0) is the mean loss of "
                "the first epoch, which must be over before GradNorm starts"
            )
        self.parametrization = parametrization
        self.warmup_epochs = warmup_epochs
        self.initial_loss = initial_loss
        self.alpha = check_range("alpha", alpha, 0.0)
        if not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        if isinstance(shared_parameters, torch.Tensor):
            params = [shared_parameters]
        elif isinstance(shared_parameters, Iterable):
            params = list(shared_parameters)
        else:
            raise TypeError(
                "shared_parameters must be an iterable of tensors (e.g. layer.parameters()), "
                f"got {type(shared_parameters).__name__}"
            )
        if not params:
            raise ValueError(
                "shared_parameters is empty; pass the parameters of the last shared layer, "
                "e.g. model.trunk[-1].parameters()"
            )
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"shared_parameters[{i}] must be a torch.Tensor, got {type(p).__name__}"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"shared_parameters[{i}] (shape {tuple(p.shape)}) must require grad"
                )
        # A plain list: the model owns these, so they stay out of gn.parameters() and its state_dict.
        self._shared_params = params
        self.task_weights = nn.Parameter(torch.ones(self.num_tasks))
        self.register_buffer("initial_losses", torch.ones(self.num_tasks))
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        if warmup_epochs or initial_loss != "first":
            # Only the LibMTL-style options keep epoch statistics (the default state is unchanged).
            self.register_buffer("num_epochs", torch.zeros((), dtype=torch.long))
            self.register_buffer("epoch_loss_sum", torch.zeros(self.num_tasks))
            self.register_buffer("epoch_loss_count", torch.zeros((), dtype=torch.long))
        self.gradnorm_loss = None

    @classmethod
    def libmtl(
        cls,
        num_tasks: int,
        shared_parameters: Iterable[torch.Tensor] | torch.Tensor,
        alpha: float = 1.5,
        task_names: Sequence[str] | None = None,
    ) -> GradNorm:
        """LibMTL's GradNorm: softmax weights, one warm-up epoch, ``L(0)`` the first epoch's mean."""
        return cls(
            num_tasks,
            shared_parameters,
            alpha,
            task_names,
            parametrization="softmax",
            warmup_epochs=1,
            initial_loss="epoch_mean",
        )

    def _warming_up(self) -> bool:
        return self.warmup_epochs > 0 and int(self.num_epochs) < self.warmup_epochs

    @torch.no_grad()
    def end_epoch(self) -> torch.Tensor:
        """Close an epoch (for ``warmup_epochs`` / ``initial_loss="epoch_mean"``); return the weights.

        Without those options there is nothing to close and the call only returns the weights.
        """
        if not hasattr(self, "num_epochs"):
            return self.weights
        if self.initial_loss == "epoch_mean" and int(self.num_epochs) == 0:
            if int(self.epoch_loss_count) == 0:
                raise RuntimeError(
                    "GradNorm.end_epoch(): no training losses were recorded in the first epoch, "
                    "so L(0) (its mean loss) is unknown; call the strategy on each batch first"
                )
            mean = mean_over_ranks(self.epoch_loss_sum / self.epoch_loss_count)
            self.initial_losses.copy_(mean.to(self.initial_losses))
        self.epoch_loss_sum.zero_()
        self.epoch_loss_count.zero_()
        self.num_epochs += 1
        return self.weights

    @torch.no_grad()
    def renormalize_(self) -> None:
        """Clamp the weights at 1e-6 and rescale them in place to sum to ``T`` (done by each call)."""
        if self.parametrization == "softmax":
            return  # the softmax is normalised by construction
        w = self.task_weights
        w.clamp_(min=_MIN_WEIGHT).mul_(self.num_tasks / w.sum())

    def _effective(self) -> torch.Tensor:
        if self.parametrization == "softmax":
            return self.num_tasks * torch.softmax(self.task_weights, dim=0)
        return self.task_weights

    @property
    def weights(self) -> torch.Tensor:
        if hasattr(self, "num_epochs") and self._warming_up():
            return torch.ones(self.num_tasks, device=self.task_weights.device)
        if self.parametrization == "softmax":
            return self._effective().detach()
        w = self.task_weights.detach().clamp(min=_MIN_WEIGHT)
        return w * (self.num_tasks / w.sum())

    def forward(self, losses: TaskLosses) -> torch.Tensor:
        """``Σ w_t L_t`` in value; its backward also gives ``task_weights`` the GradNorm gradient."""
        items, stacked = self._prepare(losses)
        ct = compute_dtype(stacked.dtype)
        return self._gradnorm_total(stacked.to(ct), items).to(stacked.dtype)

    def _gradnorm_total(self, losses: torch.Tensor, items: list[torch.Tensor]) -> torch.Tensor:
        if hasattr(self, "num_epochs") and self._warming_up():
            if self.training:
                with torch.no_grad():
                    self.epoch_loss_sum += losses.detach().to(self.epoch_loss_sum)
                    self.epoch_loss_count += 1
            self.gradnorm_loss = None
            return losses.sum()  # warm-up: the plain sum, nothing learned (LibMTL's epoch 0)
        self.renormalize_()
        w = self._effective()
        # A copy, not a view: a later in-place renormalisation must not touch this step's graph.
        total = (w.detach().clone().to(losses.dtype) * losses).sum()
        if not (self.training and torch.is_grad_enabled()):
            self.gradnorm_loss = None
            return total
        if not losses.requires_grad:
            raise ValueError(
                "GradNorm needs task losses attached to the model's autograd graph, got losses "
                "that do not require grad (use gn.eval() for a plain weighted sum)"
            )
        # The loss rates r_t come from losses averaged over the ranks, so the targets agree.
        detached = mean_over_ranks(losses.detach())
        # L(0) comes from the first GradNorm call, unless the first epoch's mean already set it.
        first = (self.num_steps == 0) & (self.initial_loss == "first")
        if value_checks_enabled():
            bad = (detached < 0) | (first & (detached == 0))
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"{self._label(i)} is {detached[i].item()}; GradNorm needs task losses >= 0, "
                    "and > 0 at the first training call (they are divided by those first values)"
                )
        grad_norms = torch.stack([self._shared_grad_norm(loss, t) for t, loss in enumerate(items)])
        # State changes only once every check has passed: a rejected call leaves no trace.
        with torch.no_grad():
            self.initial_losses.copy_(
                torch.where(first, detached.to(self.initial_losses), self.initial_losses)
            )
            self.num_steps += 1
        g = w * grad_norms.to(w.dtype)  # G_t, differentiable in w only
        relative = detached.to(w.dtype) / self.initial_losses
        rate = relative / relative.mean()
        target = g.detach().mean() * rate.pow(self.alpha)  # a constant, as in the paper
        gradnorm_loss = (g - target).abs().sum()
        self.gradnorm_loss = gradnorm_loss.detach()
        # Value unchanged (x - x == 0 exactly); the gradient of L_grad flows to w only.
        return total + (gradnorm_loss - gradnorm_loss.detach()).to(total.dtype)

    def _shared_grad_norm(self, loss: torch.Tensor, t: int) -> torch.Tensor:
        grads = torch.autograd.grad(loss, self._shared_params, retain_graph=True, allow_unused=True)
        present = [g for g in grads if g is not None]
        if not present:
            raise ValueError(
                f"{self._label(t)} does not depend on shared_parameters; GradNorm balances the "
                "gradient norms at the last shared layer, so every task loss must reach it"
            )
        norms = [
            torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))
            for g in present
        ]
        return torch.linalg.vector_norm(torch.stack(norms))

    def extra_repr(self) -> str:
        extra = ""
        if (
            self.parametrization != "renormalize"
            or self.warmup_epochs
            or self.initial_loss != "first"
        ):
            extra = (
                f", parametrization={self.parametrization!r}, warmup_epochs={self.warmup_epochs}, "
                f"initial_loss={self.initial_loss!r}"
            )
        return f"{super().extra_repr()}, alpha={self.alpha}{extra}"
