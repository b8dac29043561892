"""P×K batch sampling: P identities, K samples each, for online triplet mining."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from .._checks import check_int
from ._common import check_choice

__all__ = ["PKSampler"]

SHORT_CLASS_POLICIES: tuple[str, ...] = ("replace", "skip")


class PKSampler(Sampler[list[int]]):
    """Batches of ``p`` distinct identities × ``k`` samples each (a batch sampler).

    Every batch draws ``p`` classes uniformly without replacement among the eligible classes,
    then ``k`` samples of each. Samples of a class are served from a shuffled queue, so within
    a class every sample is used once before any is used again (a class with ``n >= k`` samples
    never repeats an index inside a batch). Batches hold the ``p`` classes' samples contiguously,
    class by class.

    Classes with fewer than ``k`` samples (``short_classes``):

    - ``"replace"`` (default): eligible if they have at least 2 samples; their ``n`` samples are
      all taken and topped up to ``k`` with samples drawn with replacement from the same class
      (so the batch holds duplicate indices).
    - ``"skip"``: not eligible.

    A class with a single sample is never eligible (it cannot provide a positive pair).

    Args:
        labels: one integer label per dataset item (sequence, NumPy array or 1-D tensor).
        p: identities per batch (``>= 1``, at most the number of eligible classes).
        k: samples per identity (``>= 2``).
        num_batches: batches per epoch (``len(sampler)``); default
            ``max(1, eligible_samples // (p * k))``, so an epoch sees about every eligible
            sample once.
        short_classes: ``"replace" | "skip"``, see above.
        seed: seeds the sampler's own generator (successive epochs differ, and a sampler built
            with the same seed replays the same sequence of epochs).
        generator: a ``torch.Generator`` to draw from instead of ``seed``. With neither, each
            epoch is seeded from torch's global generator (like ``RandomSampler``).

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> dataset_labels = torch.arange(40).repeat_interleave(5)  # 40 identities x 5 images
        >>> dataset = TensorDataset(torch.randn(200, 8), dataset_labels)
        >>> sampler = PKSampler(dataset_labels, p=16, k=4, seed=0)
        >>> loader = DataLoader(dataset, batch_sampler=sampler)  # batches of 64
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        *,
        num_batches: int | None = None,
        short_classes: str = "replace",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.p = _at_least("p", p, 1)
        self.k = _at_least("k", k, 2)
        self.short_classes = check_choice("short_classes", short_classes, SHORT_CLASS_POLICIES)
        if seed is not None and generator is not None:
            raise ValueError("give either seed or generator, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is not None:
            generator = torch.Generator().manual_seed(check_int("seed", seed))
        self.generator = generator

        self.classes = self._eligible_classes(_as_label_array(labels))
        if len(self.classes) < self.p:
            raise ValueError(
                f"p={self.p} identities per batch, but only {len(self.classes)} classes are "
                f"eligible (short_classes={self.short_classes!r}, k={self.k})"
            )
        eligible = sum(len(c) for c in self.classes)
        default = max(1, eligible // (self.p * self.k))
        self.num_batches = (
            default if num_batches is None else _at_least("num_batches", num_batches, 1)
        )

    def _eligible_classes(self, labels: np.ndarray) -> list[np.ndarray]:
        minimum = self.k if self.short_classes == "skip" else 2
        order = np.argsort(labels, kind="stable")
        values, starts = np.unique(labels[order], return_index=True)
        groups = np.split(order, starts[1:]) if len(values) else []
        return [g for g in groups if len(g) >= minimum]

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g = self.generator
        if g is None:
            g = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
        queues = [_ClassQueue(members, g) for members in self.classes]
        for _ in range(self.num_batches):
            chosen = torch.randperm(len(queues), generator=g)[: self.p].tolist()
            batch: list[int] = []
            for c in chosen:
                batch.extend(queues[c].take(self.k))
            yield batch


class _ClassQueue:
    """The samples of one class as a queue of shuffled cycles, topped up when fewer than ``k`` remain."""

    def __init__(self, members: np.ndarray, generator: torch.Generator) -> None:
        self.members = members
        self.g = generator
        self.queue: list[int] = []

    def _shuffled(self) -> list[int]:
        perm = torch.randperm(len(self.members), generator=self.g).numpy()
        return self.members[perm].tolist()

    def _next_cycle(self, left: set[int], need: int) -> list[int]:
        """A new shuffled cycle whose first ``need`` items avoid the ``left`` leftovers.

        Each cycle stays a full permutation (every sample once per cycle) and the batch that
        joins the leftovers with the cycle's head has no repeat: a leftover drawn into the head
        swaps places with a later sample that is not a leftover.
        """
        cycle = self._shuffled()
        later = need
        for j in range(need):
            if cycle[j] in left:
                while cycle[later] in left:
                    later += 1
                cycle[j], cycle[later] = cycle[later], cycle[j]
                later += 1
        return cycle

    def take(self, k: int) -> list[int]:
        n = len(self.members)
        if n < k:  # short class ("replace" policy): all of it, topped up with replacement
            extra = torch.randint(n, (k - n,), generator=self.g).numpy()
            return self._shuffled() + self.members[extra].tolist()
        if len(self.queue) < k:
            self.queue += self._next_cycle(set(self.queue), k - len(self.queue))
        out, self.queue = self.queue[:k], self.queue[k:]
        return out


def _at_least(name: str, value: object, low: int) -> int:
    v = check_int(name, value)
    if v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v}")
    return v


def _as_label_array(labels: object) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.dtype == object or arr.ndim == 0:
        raise TypeError(
            "labels must be a 1-D tensor, array or sequence of integer labels, "
            f"got {type(labels).__name__}"
        )
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(
            f"labels must be a 1-D sequence of integer labels, got shape {arr.shape} "
            f"and dtype {arr.dtype}"
        )
    return arr
