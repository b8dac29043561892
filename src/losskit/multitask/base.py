"""The interface every multi-task weighting strategy shares.

A strategy is an ``nn.Module`` that turns the task losses of one training step into the scalar the
model is trained on::

    total = strategy(losses)      # losses: sequence or dict of scalar tensors, or a 1-D tensor
    strategy.weights              # the current per-task multipliers (detached 1-D tensor)

Learned quantities are ``nn.Parameter`` s (they go to the optimizer and the ``state_dict``);
statistics (loss histories, KPI averages, step counters) are buffers, so they move with ``.to()``
and survive ``state_dict()`` / ``load_state_dict()``. Task names given as dict keys are kept in
``task_names`` and saved in the ``state_dict`` too.

Under ``torch.distributed`` the statistics that strategies keep (DTP's KPI averages, DWA's loss
history, GradNorm's initial losses) are averaged over the ranks before they are stored, so every rank
holds the same weights and ranks never diverge. Learned weights are ordinary parameters: put the
strategy inside the module that DDP wraps (or wrap it in its own DDP) and DDP keeps them in sync.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import torch
from torch import nn

from .._checks import (
    check_int,
    check_number,
    check_same_device,
    check_tensor,
    value_checks_enabled,
)
from .._precision import compute_dtype

__all__ = ["MultiTaskWeighting", "TaskLosses", "mean_over_ranks"]

TaskLosses: TypeAlias = Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | torch.Tensor
"""Per-task losses: a sequence or dict of scalar tensors, or a 1-D tensor with one entry per task."""


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The average of ``t`` over the ranks of the default process group (``t`` itself without one).

    Used for the statistics a strategy stores, so that every rank computes the same task weights.
    """
    import torch.distributed as dist

    from ..distributed import is_distributed

    if not is_distributed():
        return t
    total = t.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def check_task_names(names: object, num_tasks: int) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"task_names must be a sequence of str, got {type(names).__name__}")
    names = tuple(names)
    if len(names) != num_tasks:
        raise ValueError(
            f"task_names must hold one name per task ({num_tasks}), got {len(names)}: {names!r}"
        )
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"task_names must hold str, got {n!r} ({type(n).__name__})")
    if len(set(names)) != len(names):
        raise ValueError(f"task_names must be distinct, got {names!r}")
    return names


def per_task_floats(
    name: str, value: object, num_tasks: int, *, low: float | None = None
) -> list[float]:
    """A finite float, or a sequence of one finite float per task, as a list of ``num_tasks`` floats."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        values = list(value)
        if len(values) != num_tasks:
            raise ValueError(
                f"{name} must be a number or hold one value per task ({num_tasks}), "
                f"got {len(values)}: {value!r}"
            )
        labels = [f"{name}[{i}]" for i in range(num_tasks)]
    else:
        values, labels = [value] * num_tasks, [name] * num_tasks
    out = []
    for label, v in zip(labels, values, strict=True):
        f = check_number(label, v)
        if not math.isfinite(f):
            raise ValueError(f"{label} must be finite, got {v!r}")
        if low is not None and f < low:
            raise ValueError(f"{label} must be >= {low:g}, got {v!r}")
        out.append(f)
    return out


class MultiTaskWeighting(nn.Module):
    """Base class of the multi-task weighting strategies: ``total = strategy(losses)``.

    Subclasses implement :meth:`_combine` (stacked losses → total) and :attr:`weights`.

    Args:
        num_tasks: number of tasks ``T`` (>= 1).
        task_names: optional names of the tasks. If omitted, the keys of the first dict of losses
            (or KPIs) passed in become the names; later dicts must have the same keys, in any order.

    Losses: a sequence (list/tuple) of ``T`` scalar floating tensors, a dict ``name -> scalar
    tensor``, or a 1-D tensor of ``T`` losses. A wrong count, a non-tensor, a non-scalar tensor or a
    NaN/inf loss raises ``TypeError``/``ValueError`` naming the entry (the NaN/inf check reads the
    values, so it follows :func:`losskit.set_checks`). The total has the losses' dtype; it is computed
    in float32 for float16/bfloat16 losses.
    """

    num_tasks: int
    task_names: tuple[str, ...] | None

    def __init__(self, num_tasks: int, task_names: Sequence[str] | None = None) -> None:
        super().__init__()
        num_tasks = check_int("num_tasks", num_tasks)
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.task_names = None if task_names is None else check_task_names(task_names, num_tasks)

    # -- the interface ------------------------------------------------------------------------
    def forward(self, losses: TaskLosses) -> torch.Tensor:
        """The scalar to train on, from one loss per task."""
        _, stacked = self._prepare(losses)
        ct = compute_dtype(stacked.dtype)
        return self._combine(stacked.to(ct)).to(stacked.dtype)

    def _combine(self, losses: torch.Tensor) -> torch.Tensor:
        """Total from the stacked ``(T,)`` losses, already in their compute dtype."""
        raise NotImplementedError

    @property
    def weights(self) -> torch.Tensor:
        """Current per-task multipliers of the losses, a detached ``(T,)`` tensor."""
        raise NotImplementedError

    def weights_dict(self) -> dict[str, float]:
        """The current weights by task name (``"0"``, ``"1"``, … when no names are known); for logging."""
        names = self.task_names or tuple(str(i) for i in range(self.num_tasks))
        return dict(zip(names, self.weights.tolist(), strict=True))

    # -- parsing and checking per-task values --------------------------------------------------
    def _label(self, i: int, name: str = "losses") -> str:
        return f"{name}[{self.task_names[i]!r}]" if self.task_names else f"{name}[{i}]"

    def _check_count(self, name: str, n: int) -> None:
        if n != self.num_tasks:
            raise ValueError(
                f"{name} must hold one value per task ({self.num_tasks} tasks), got {n}"
            )

    def _task_entries(self, values: object, name: str) -> list[tuple[str, Any]]:
        """``(label, value)`` per task, in task order; labels name the entry in error messages."""
        if isinstance(values, torch.Tensor):
            if values.dim() != 1:
                raise ValueError(
                    f"{name} given as one tensor must be 1-D with one entry per task "
                    f"({self.num_tasks}), got shape {tuple(values.shape)}"
                )
            self._check_count(name, values.shape[0])
            return [(self._label(i, name), values[i]) for i in range(self.num_tasks)]
        if isinstance(values, Mapping):
            keys = list(values.keys())
            for k in keys:
                if not isinstance(k, str):
                    raise TypeError(f"{name} keys must be task names (str), got {k!r}")
            if self.task_names is None:
                self._check_count(name, len(keys))
                self.task_names = tuple(keys)  # the first dict names the tasks
            elif set(keys) != set(self.task_names):
                missing = [k for k in self.task_names if k not in values]
                unexpected = [k for k in keys if k not in self.task_names]
                raise ValueError(
                    f"{name} keys must be the task names {list(self.task_names)}; "
                    f"missing {missing}, unexpected {unexpected}"
                )
            return [(f"{name}[{k!r}]", values[k]) for k in self.task_names]
        if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
            self._check_count(name, len(values))
            return [(self._label(i, name), v) for i, v in enumerate(values)]
        raise TypeError(
            f"{name} must be a sequence or dict of {self.num_tasks} scalar tensors "
            f"(or a 1-D tensor), got {type(values).__name__}"
        )

    def _prepare(self, losses: TaskLosses) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Check the losses; return them one per task (in task order) and stacked as ``(T,)``."""
        entries = self._task_entries(losses, "losses")
        if isinstance(losses, torch.Tensor):
            if not losses.is_floating_point():
                raise TypeError(f"losses must be a floating-point tensor, got dtype {losses.dtype}")
            stacked = losses
        else:
            for label, v in entries:
                check_tensor(label, v)
                if not v.is_floating_point():
                    raise TypeError(f"{label} must be a floating-point tensor, got dtype {v.dtype}")
                if v.dim() != 0:
                    raise ValueError(
                        f"{label} must be a scalar (0-D) tensor, got shape {tuple(v.shape)}; "
                        "reduce each task's loss to a scalar first (e.g. .mean())"
                    )
            first_label, first = entries[0]
            for label, v in entries[1:]:
                check_same_device(label, v, first, first_label)
            stacked = torch.stack([v for _, v in entries])
        self._check_device(stacked.device)
        if value_checks_enabled():  # one device read per call; set_checks("shapes") skips it
            bad = ~torch.isfinite(stacked.detach())
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"{entries[i][0]} is {stacked[i].item()}; every task loss must be finite"
                )
        return [v for _, v in entries], stacked

    def _check_device(self, device: torch.device) -> None:
        # A strategy left on the CPU while the model moved to the GPU is a classic slip. Its
        # tensors move together, so the first one tells.
        first = next(itertools.chain(self.named_parameters(), self.named_buffers()), None)
        if first is not None and first[1].device != device:
            name, t = first
            raise ValueError(
                f"the losses are on {device} but this strategy's {name} is on {t.device}; "
                f"move the strategy with .to({str(device)!r})"
            )

    def _check_positive(self, losses: torch.Tensor, why: str, *, strict: bool = True) -> None:
        """Raise if a loss is <= 0 (``strict``) or < 0; reads the values, so follows set_checks."""
        if not value_checks_enabled():
            return
        bad = losses.detach() <= 0 if strict else losses.detach() < 0
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            sign = "> 0" if strict else ">= 0"
            raise ValueError(
                f"{self._label(i)} is {losses[i].item()}; {type(self).__name__} needs task "
                f"losses {sign} ({why})"
            )

    # -- task names travel with the state_dict -------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "task_names": self.task_names}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("num_tasks", self.num_tasks) != self.num_tasks:
            raise ValueError(
                f"state_dict is for {state['num_tasks']} tasks, this {type(self).__name__} "
                f"has {self.num_tasks}"
            )
        names = state.get("task_names")
        if names is not None:
            self.task_names = check_task_names(list(names), self.num_tasks)

    def extra_repr(self) -> str:
        names = f", task_names={list(self.task_names)}" if self.task_names else ""
        return f"num_tasks={self.num_tasks}{names}"
