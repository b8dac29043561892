"""Per-task gradients, their Gramian ``G = J Jᵀ`` and the final backward of the aggregators.

Memory. :func:`gramian` never holds more than ``max_gradients`` full per-task gradients of the
shared parameters at once: tasks are taken in blocks of ``max_gradients - 1`` that stay in memory
("pinned") while every later task's gradient is computed once more and *streamed*: a hook on each
shared parameter dots that parameter's piece of the gradient with the pinned block as soon as the
backward produces it and hands the engine a zero-stride zero in its place, so at most one
parameter's piece of a streamed gradient exists at a time. With ``max_gradients=2`` that is one
pinned gradient plus one parameter in flight, at the cost of ``T(T+1)/2`` backward passes instead
of ``T``; with ``max_gradients=None`` every gradient is computed once and kept (``T`` held).
Every pass is a ``torch.autograd.grad(..., retain_graph=True)`` restricted to the shared
parameters, so nothing is written to ``.grad`` (and no DDP hook runs) until the final pass.

The final pass (:func:`final_backward`) is one ordinary ``backward()`` of ``Σ_t L_t`` with a hook on
each shared parameter (or on the shared representation) that replaces the gradient arriving there
by the aggregated one. Task-specific parameters therefore get their ordinary gradients, the shared
ones the aggregated gradient, ``.grad`` accumulates as usual, and DDP's reducer (whose hooks run
after these) sees exactly one backward per step and averages the aggregated gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

__all__ = [
    "backward_with_replacement",
    "check_parameters",
    "gramian",
    "per_task_gradients",
    "task_losses",
]


def task_losses(losses: object) -> list[torch.Tensor]:
    """One scalar loss tensor per task, from a sequence, a dict (values in order) or a 1-D tensor."""
    if isinstance(losses, torch.Tensor):
        if losses.dim() == 0:
            raise ValueError(
                "losses is one scalar; pass one loss per task (a list, dict or 1-D tensor): an "
                "aggregator needs every task's loss separately, and their sum alone makes any "
                "aggregator a plain sum (e.g. PCGrad after one combined backward() is a no-op)"
            )
        if losses.dim() != 1:
            raise ValueError(
                f"losses given as one tensor must be 1-D (one entry per task), got shape "
                f"{tuple(losses.shape)}"
            )
        items = [(f"losses[{i}]", losses[i]) for i in range(losses.shape[0])]
    elif isinstance(losses, Mapping):
        items = [(f"losses[{k!r}]", v) for k, v in losses.items()]
    elif isinstance(losses, Sequence) and not isinstance(losses, (str, bytes)):
        items = [(f"losses[{i}]", v) for i, v in enumerate(losses)]
    else:
        raise TypeError(
            "losses must be a sequence or dict of scalar tensors (one per task) or a 1-D tensor, "
            f"got {type(losses).__name__}"
        )
    if not items:
        raise ValueError("losses is empty; pass one loss per task")
    out = []
    for label, v in items:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{label} must be a floating-point tensor, got dtype {v.dtype}")
        if v.dim() != 0:
            raise ValueError(
                f"{label} must be a scalar (0-D) tensor, got shape {tuple(v.shape)}; reduce each "
                "task's loss to a scalar first (e.g. .mean())"
            )
        if not v.requires_grad:
            raise ValueError(
                f"{label} does not require grad; the aggregator differentiates every task loss "
                "(compute the losses with grad enabled, from the model's outputs)"
            )
        if v.device != items[0][1].device:
            raise ValueError(
                f"{label} is on {v.device} but {items[0][0]} is on {items[0][1].device}"
            )
        out.append(v)
    return out


def check_parameters(params: object, *, allow_empty: bool) -> list[torch.Tensor]:
    """The shared parameters as a list of tensors that require grad."""
    if params is None and allow_empty:
        return []
    if isinstance(params, torch.Tensor):
        params = [params]
    elif isinstance(params, Iterable):
        params = list(params)
    else:
        raise TypeError(
            "shared_parameters must be an iterable of tensors (e.g. model.trunk.parameters()), "
            f"got {type(params).__name__}"
        )
    if not params and not allow_empty:
        raise ValueError(
            "shared_parameters is empty; pass the parameters every task shares "
            "(e.g. model.trunk.parameters())"
        )
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(
                f"shared_parameters[{i}] must be a torch.Tensor, got {type(p).__name__}"
            )
        if not p.requires_grad:
            raise ValueError(f"shared_parameters[{i}] (shape {tuple(p.shape)}) must require grad")
        if id(p) in seen:
            raise ValueError(f"shared_parameters[{i}] appears twice; pass each parameter once")
        seen.add(id(p))
    return params


def per_task_gradients(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``∂loss/∂inputs`` (zeros where unused), keeping the graph for the next task."""
    grads = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    # torch.dot on the flattened views: no product temporary the size of a parameter.
    total = torch.zeros((), dtype=torch.float64, device=a[0].device)
    for x, y in zip(a, b, strict=True):
        if x.dtype in (torch.float16, torch.bfloat16):
            x, y = x.float(), y.float()
        total += torch.dot(x.reshape(-1), y.reshape(-1)).double()
    return total


def _all_reduce_mean(tensors: Sequence[torch.Tensor]) -> None:
    import torch.distributed as dist

    world = dist.get_world_size()
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(world)


def gramian(
    losses: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    max_gradients: int | None,
    sync_gradients: bool = False,
) -> tuple[torch.Tensor, list[list[torch.Tensor]] | None]:
    """``G[i, j] = ∇L_i · ∇L_j`` over ``inputs`` (float64), holding at most ``max_gradients``.

    Returns ``(G, gradients)``: the per-task gradients too when all of them were kept
    (``max_gradients`` is None or >= T), else None. ``sync_gradients``: average every per-task
    gradient over the ranks before using it (DDP, ``sync="gradients"``).
    """
    T = len(losses)
    block = T if max_gradients is None else max(1, min(T, max_gradients - 1))
    G = torch.zeros(T, T, dtype=torch.float64, device=losses[0].device)

    def grad(t: int) -> list[torch.Tensor]:
        g = per_task_gradients(losses[t], inputs)
        if sync_gradients:
            _all_reduce_mean(g)
        return g

    def rows(start: int) -> list[list[torch.Tensor]]:
        # A function of its own, so the block's gradients die with its frame before the next one.
        pinned = [grad(t) for t in range(start, min(start + block, T))]
        for a in range(len(pinned)):
            for b in range(a, len(pinned)):
                G[start + a, start + b] = _dot(pinned[a], pinned[b])
        for j in range(start + block, T):
            G[start : start + len(pinned), j] = _streamed_dots(
                losses[j], inputs, pinned, sync_gradients
            )
        return pinned if block == T else []

    kept = None
    for start in range(0, T, block):
        kept = rows(start) or None
    G = torch.triu(G) + torch.triu(G, 1).T
    return G, kept


def _streamed_dots(
    loss: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    pinned: Sequence[Sequence[torch.Tensor]],
    sync_gradients: bool,
) -> torch.Tensor:
    """``(∇loss · g for g in pinned)`` without ever holding ``∇loss`` whole (see the module doc)."""
    dots = torch.zeros(len(pinned), dtype=torch.float64, device=loss.device)

    def hook_for(k: int):
        def hook(g: torch.Tensor) -> torch.Tensor:
            if sync_gradients:
                g = g.contiguous()
                _all_reduce_mean([g])
            for a, ga in enumerate(pinned):
                dots[a] += _dot([ga[k]], [g])
            # a zero-stride zero of the right shape: the engine keeps it, it costs nothing
            return torch.zeros((), dtype=g.dtype, device=g.device).expand(g.shape)

        return hook

    handles = [x.register_hook(hook_for(k)) for k, x in enumerate(inputs)]
    try:
        torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return dots


def backward_with_replacement(
    losses: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    replacements: list[torch.Tensor],
) -> None:
    """``backward(Σ L_t)`` where the gradient reaching ``targets[k]`` is replaced by ``replacements[k]``.

    ``targets`` are the shared parameters (leaf hooks run before ``.grad`` accumulation and before
    DDP's hooks) or the shared representation (the trunk below it then receives the replacement).
    The hooks drop this function's reference to each replacement, so ``.grad`` can take the
    tensor over without a copy.
    """
    pending = dict(enumerate(replacements))
    replacements.clear()

    def hook_for(k: int):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            return pending.pop(k).to(grad.dtype)

        return hook

    handles = [t.register_hook(hook_for(k)) for k, t in enumerate(targets)]
    try:
        torch.autograd.backward(sum(losses))  # one pass; heads get their plain gradients
    finally:
        for h in handles:
            h.remove()
        pending.clear()
