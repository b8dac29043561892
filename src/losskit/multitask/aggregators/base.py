"""The interface every gradient aggregator shares: ``aggregator.backward(losses, shared_parameters)``.

A loss-weighting strategy (:mod:`losskit.multitask`) turns the task losses into one scalar and lets
``backward()`` do the rest. A *gradient aggregator* looks at every task's gradient of the shared
part of the model and combines those gradients into one update direction (removing conflicts,
balancing norms, …); the combination is not a fixed weighting of the losses, so it needs its own
backward::

    losses = [loss_a, loss_b, loss_c]          # one scalar per task, from one forward pass
    optimizer.zero_grad()
    aggregator.backward(losses, model.trunk.parameters())
    optimizer.step()                           # shared: aggregated gradient; heads: ordinary ones

What is computed. Every aggregator except :class:`GradDrop` is a *Gramian weighting*: its direction
is ``d = Σ_t w_t ∇L_t`` with weights ``w`` that depend only on the Gramian ``G = J Jᵀ`` of the
per-task gradients (``G[i, j] = ∇L_i · ∇L_j``). So the aggregator computes ``G`` (holding at most
``max_gradients`` full per-task gradients at once, see :mod:`._gramian`), solves its small ``T × T``
problem on the host in float64, and puts ``d`` on the shared parameters with one more backward.

``shared_representation``. Passing the output ``z`` of the shared trunk (the features the heads
read) aggregates the gradients with respect to ``z`` instead of the parameters, as LibMTL's
``rep_grad=True`` and MGDA-UB do: ``T`` backward passes through the heads only (cheap, all ``T``
kept: each is the size of ``z``), then the trunk receives ``Σ_t w_t ∂L_t/∂z`` in one backward.

DDP. Put the model in ``DistributedDataParallel`` as usual and call ``aggregator.backward``
instead of ``loss.backward()``. With ``sync="gramian"`` (default) the ``T × T`` Gramian is averaged
over the ranks (one tiny all-reduce), so every rank computes the same weights; DDP then averages
``Σ_t w_t ∇L_t`` across ranks in the final backward. With ``sync="gradients"`` every per-task
gradient is averaged before use, so the result equals one process on the concatenated batch
(``T`` all-reduces of the shared parameters; with ``max_gradients=2`` the streamed gradients are
reduced again each time they are recomputed).

AMP. Pass ``grad_scaler=scaler`` (a ``torch.amp.GradScaler``): the losses are scaled before
differentiation (no fp16 underflow), the scale is divided out of the Gramian before the weights
are computed (``G / S²``: methods such as Nash-MTL or a ``max_norm`` clip are not scale-invariant),
and the shared and task gradients are left scaled, so ``scaler.step(optimizer)`` and
``scaler.update()`` follow as usual. A Gramian with inf/NaN (overflow) gives equal weights and a
non-finite ``.grad``, so the scaler skips the step and lowers the scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..._checks import value_checks_enabled
from ._gramian import (
    backward_with_replacement,
    check_parameters,
    gramian,
    per_task_gradients,
    task_losses,
)

__all__ = ["GradientAggregator"]

_SYNCS = ("gramian", "gradients")


def _distributed() -> bool:
    from ...distributed import is_distributed

    return is_distributed()


class GradientAggregator(nn.Module):
    """Base class: combine the per-task gradients of the shared parameters into one direction.

    Args:
        max_gradients: most full per-task gradients of the shared parameters held at once while
            the Gramian is accumulated (>= 2, default 2: one kept, one in flight, ``T(T+1)/2``
            backward passes); ``None`` keeps all ``T`` (``T`` backward passes, fastest). Methods
            that need every gradient (:class:`GradDrop`) always keep ``T``.
        sync: under ``torch.distributed``, ``"gramian"`` (average the ``T × T`` Gramian) or
            ``"gradients"`` (average every per-task gradient); see the module docstring.

    Subclasses implement :meth:`gramian_weights` (NumPy float64 ``G`` → ``w``), or set
    ``needs_gramian = False`` and implement :meth:`combine` on the ``(T, n)`` gradient matrix.
    """

    needs_gramian = True
    last_weights: torch.Tensor | None

    def __init__(self, *, max_gradients: int | None = 2, sync: str = "gramian") -> None:
        super().__init__()
        if max_gradients is not None:
            if isinstance(max_gradients, bool) or not isinstance(max_gradients, int):
                raise TypeError(
                    f"max_gradients must be an int >= 2 or None, got {type(max_gradients).__name__}"
                )
            if max_gradients < 2:
                raise ValueError(
                    f"max_gradients must be >= 2 (one gradient kept, one in flight) or None, got "
                    f"{max_gradients}"
                )
        if sync not in _SYNCS:
            raise ValueError(f"sync must be one of {_SYNCS}, got {sync!r}")
        self.max_gradients = max_gradients
        self.sync = sync
        self.last_weights = None

    # -- what a method defines --------------------------------------------------------------
    def gramian_weights(self, G: np.ndarray) -> np.ndarray:
        """The task weights ``w`` (``d = Jᵀw``) from the float64 ``(T, T)`` Gramian."""
        raise NotImplementedError

    def combine(self, matrix: torch.Tensor) -> torch.Tensor:
        """The aggregated vector from the ``(T, n)`` matrix of per-task gradients."""
        G = matrix.detach().double() @ matrix.detach().double().T
        w = self.weights(G)
        return w.to(matrix.dtype) @ matrix

    # -- public helpers ---------------------------------------------------------------------
    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        """The task weights for a ``(T, T)`` Gramian (float64 tensor on the CPU)."""
        if not isinstance(gramian, torch.Tensor) or gramian.dim() != 2:
            raise ValueError("gramian must be a (T, T) tensor")
        if gramian.shape[0] != gramian.shape[1]:
            raise ValueError(f"gramian must be square, got shape {tuple(gramian.shape)}")
        G = gramian.detach().to("cpu", torch.float64).numpy()
        G = 0.5 * (G + G.T)
        return torch.from_numpy(np.asarray(self.gramian_weights(G), dtype=np.float64))

    def aggregate(self, matrix: torch.Tensor) -> torch.Tensor:
        """The aggregated direction of the rows of ``matrix`` (``(T, n)``: one gradient per task)."""
        if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2:
            raise ValueError(
                "matrix must be a 2-D tensor (one row per task's gradient), got "
                + (f"shape {tuple(matrix.shape)}" if isinstance(matrix, torch.Tensor) else "")
                + ("" if isinstance(matrix, torch.Tensor) else type(matrix).__name__)
            )
        return self.combine(matrix)

    # -- the training step ------------------------------------------------------------------
    def backward(
        self,
        losses: object,
        shared_parameters: Iterable[torch.Tensor] | torch.Tensor | None,
        *,
        shared_representation: torch.Tensor | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> torch.Tensor | None:
        """Put the aggregated gradient in ``.grad`` of the shared parameters (see the class doc).

        Args:
            losses: one scalar loss per task: a sequence, a dict (its values, in order) or a
                1-D tensor. They must come from one forward pass (one autograd graph).
            shared_parameters: the parameters every task shares (the trunk). With
                ``shared_representation`` they may be omitted (``None``): the trunk below the
                representation receives the aggregated gradient through it.
            shared_representation: optional shared feature tensor (the trunk's output); the
                aggregation then uses the gradients with respect to it (LibMTL's ``rep_grad``).
            grad_scaler: optional ``torch.amp.GradScaler``; see the module docstring.

        Returns:
            The task weights used (``d = Σ w_t ∇L_t``), a float64 ``(T,)`` CPU tensor, or None
            for :class:`GradDrop`. Also kept in ``last_weights``.

        The graph is freed by the final backward (as ``loss.backward()`` does). ``.grad`` is
        accumulated into, so gradient accumulation over micro-batches works as usual.
        """
        items = task_losses(losses)
        if grad_scaler is not None:
            if not isinstance(grad_scaler, torch.amp.GradScaler):
                raise TypeError(
                    f"grad_scaler must be a torch.amp.GradScaler, got {type(grad_scaler).__name__}"
                )
            if grad_scaler.is_enabled():
                items = [grad_scaler.scale(v) for v in items]
                scale = float(grad_scaler.get_scale())
            else:
                scale = 1.0
        else:
            scale = 1.0
        if shared_representation is not None:
            params = check_parameters(shared_parameters, allow_empty=True)
            return self._backward_representation(items, shared_representation, scale, grad_scaler)
        params = check_parameters(shared_parameters, allow_empty=False)
        sync_grads = self.sync == "gradients" and _distributed()
        if not self.needs_gramian:
            grads = [per_task_gradients(v, params) for v in items]
            if sync_grads:
                for g in grads:
                    _all_reduce_mean(g)
            direction = [
                self.combine(torch.stack([g[k] for g in grads]).reshape(len(items), -1)).reshape(
                    p.shape
                )
                for k, p in enumerate(params)
            ]
            del grads
            self.last_weights = None
            backward_with_replacement(items, params, direction)
            return None
        G, kept = gramian(items, params, self.max_gradients, sync_gradients=sync_grads)
        w = self._weights_of(G, scale, grad_scaler)
        if kept is not None:
            direction = []
            for k in range(len(params)):
                acc = kept[0][k].mul_(float(w[0]))
                for t in range(1, len(items)):
                    acc.add_(kept[t][k], alpha=float(w[t]))
                direction.append(acc)
            del kept
        else:
            # One root Σ w_t L_t (a multi-root grad with grad_outputs kept ~1 gradient's worth
            # of memory alive on the CPU in our measurements).
            weighted = sum(v * float(w[t]) for t, v in enumerate(items))
            grads = torch.autograd.grad(weighted, params, retain_graph=True, allow_unused=True)
            direction = [
                torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)
            ]
            del grads
        backward_with_replacement(items, params, direction)
        return w

    def _backward_representation(self, items, rep, scale, grad_scaler) -> torch.Tensor | None:
        if not isinstance(rep, torch.Tensor):
            raise TypeError(
                f"shared_representation must be a torch.Tensor, got {type(rep).__name__}"
            )
        if not rep.requires_grad:
            raise ValueError(
                "shared_representation does not require grad; pass the trunk's output tensor "
                "that the task heads read (not a detached copy)"
            )
        T = len(items)
        R = torch.stack([per_task_gradients(v, [rep])[0] for v in items]).reshape(T, -1)
        if self.needs_gramian:
            G = R.double() @ R.double().T
            w = self._weights_of(G, scale, grad_scaler)
            direction = (w.to(R.device, R.dtype) @ R).reshape(rep.shape)
        else:
            direction, w = self.combine(R).reshape(rep.shape), None
            self.last_weights = None
        del R
        backward_with_replacement(items, [rep], [direction])
        return w

    def _weights_of(self, G: torch.Tensor, scale: float, grad_scaler) -> torch.Tensor:
        if _distributed() and self.sync == "gramian":
            _all_reduce_mean([G])
        G = G.cpu() / (scale * scale)
        if not bool(torch.isfinite(G).all()):
            if grad_scaler is None and value_checks_enabled():
                raise ValueError(
                    "the per-task gradients are not finite (their Gramian holds inf/NaN); check "
                    "the losses, or pass grad_scaler= when training with a GradScaler"
                )
            # Overflow under AMP: any weights do, the scaler will skip this step.
            w = torch.ones(G.shape[0], dtype=torch.float64)
        else:
            w = self.weights(G)
            if not bool(torch.isfinite(w).all()):
                raise FloatingPointError(
                    f"{type(self).__name__} produced non-finite task weights {w.tolist()} from "
                    f"the Gramian {G.tolist()}"
                )
        self.last_weights = w
        return w

    def extra_repr(self) -> str:
        return f"max_gradients={self.max_gradients}, sync={self.sync!r}"


def _all_reduce_mean(tensors) -> None:
    from ._gramian import _all_reduce_mean as reduce

    reduce(tensors)


def check_unit(name: str, value: object, *, low: float = 0.0, high: float = math.inf) -> float:
    """A finite float in ``[low, high]``."""
    from ..._checks import check_number

    f = check_number(name, value)
    if not math.isfinite(f) or not low <= f <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    return f
