"""GradCache: a contrastive step over a batch whose encoders' activations do not fit in memory.

Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup" (RepL4NLP 2021). The loss of a batch depends on the encoders only through the
embeddings, so the parameter gradient is :math:`\\sum_k (\\partial L / \\partial e_k)
(\\partial e_k / \\partial \\theta)`: compute every embedding without a graph, the loss and its
gradient with respect to the embeddings, then re-run each mini-batch with a graph and
back-propagate that slice of the embedding gradient. Peak activation memory is one
mini-batch's; the price is a second forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = ["cached_contrastive_step"]

Batch = torch.Tensor | Mapping[str, torch.Tensor]


def _rows(batch: Batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping) and batch:
        sizes = {k: v.shape[0] for k, v in batch.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"every tensor of a dict input must have the same batch size, got {sizes}"
            )
        return next(iter(sizes.values()))
    raise TypeError(
        f"each input must be a tensor or a non-empty dict of tensors, got {type(batch).__name__}"
    )


def _split(batch: Batch, size: int) -> Iterator[Batch]:
    n = _rows(batch)
    for start in range(0, n, size):
        if isinstance(batch, torch.Tensor):
            yield batch[start : start + size]
        else:
            yield {k: v[start : start + size] for k, v in batch.items()}


def _devices(batch: Batch) -> list[int]:
    tensors = [batch] if isinstance(batch, torch.Tensor) else list(batch.values())
    return sorted({t.device.index or 0 for t in tensors if t.is_cuda})


class _RngReplay:
    """The RNG state before a mini-batch's first forward, restored for its re-run (dropout)."""

    def __init__(self, devices: list[int]) -> None:
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for d, state in zip(self.devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, d)
            yield


def cached_contrastive_step(
    loss_fn: Callable[..., torch.Tensor],
    encoders: Sequence[Callable[[Any], torch.Tensor]],
    inputs: Sequence[Batch],
    *,
    mini_batch: int,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Accumulate into the encoders' ``.grad`` the gradient of ``loss_fn`` on the full batch.

    ``loss_fn(encoders[0](inputs[0]), encoders[1](inputs[1]), ...)`` is the loss of the whole
    batch (e.g. ``lambda img, txt: clip_loss(img, txt, scale)``); this function computes the
    same parameter gradients as ``loss.backward()`` on it, holding the activations of only
    ``mini_batch`` rows at a time:

    1. every embedding without a graph (``torch.no_grad``), ``mini_batch`` rows at a time;
    2. the loss on the detached embeddings and its gradient with respect to them (parameters
       of ``loss_fn`` itself, such as a module's ``logit_scale``, get their gradient here);
    3. each mini-batch again with a graph, back-propagating its slice of that gradient.

    The RNG state of each mini-batch's first pass is restored for its second, so dropout
    draws the same masks. Layers whose output depends on the rest of the batch (BatchNorm in
    training mode) see mini-batches, not the batch, in both passes. Under DDP, pass
    ``no_sync=model.no_sync`` (one encoder) so that only the last backward all-reduces; with
    several DDP encoders, wrap them in one module. The loss may itself be distributed
    (``clip_loss(..., group=...)``): its embedding gradients follow the cross-rank convention.

    Args:
        loss_fn: ``loss_fn(*embeddings) -> scalar``.
        encoders: one callable per input (the same module may appear twice).
        inputs: one batch per encoder, a tensor or a dict of tensors (``(B, ...)`` each).
        mini_batch: rows per encoder pass.
        no_sync: optional context-manager factory suspending gradient synchronisation.

    Returns:
        The loss (detached).

    Example:
        >>> enc = torch.nn.Linear(32, 8)
        >>> x, y = torch.randn(64, 32), torch.randn(64, 32)
        >>> loss = cached_contrastive_step(
        ...     lambda a, b: losskit.contrastive.info_nce_loss(a, b), [enc, enc], [x, y],
        ...     mini_batch=16)
        >>> enc.weight.grad.shape
        torch.Size([8, 32])
    """
    if isinstance(mini_batch, bool) or not isinstance(mini_batch, int) or mini_batch < 1:
        raise ValueError(f"mini_batch must be an int >= 1, got {mini_batch!r}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if len(encoders) != len(inputs) or not encoders:
        raise ValueError(
            f"encoders and inputs must be non-empty and pair up one to one, got "
            f"{len(encoders)} encoders and {len(inputs)} inputs"
        )
    for k, enc in enumerate(encoders):
        if not callable(enc):
            raise TypeError(f"encoders[{k}] must be callable, got {type(enc).__name__}")

    # 1. Embeddings without a graph, remembering each mini-batch's RNG state.
    embeddings, states = [], []
    with torch.no_grad():
        for enc, batch in zip(encoders, inputs, strict=True):
            parts, rng = [], []
            for part in _split(batch, mini_batch):
                rng.append(_RngReplay(_devices(part)))
                parts.append(enc(part))
            embeddings.append(torch.cat(parts))
            states.append(rng)

    # 2. The loss and its gradient with respect to the embeddings.
    leaves = [e.detach().requires_grad_(True) for e in embeddings]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
    loss.backward()
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]

    # 3. Re-run each mini-batch with a graph and back-propagate its gradient slice.
    jobs = [
        (enc, part, g, rng)
        for enc, batch, grad, rngs in zip(encoders, inputs, grads, states, strict=True)
        for part, g, rng in zip(
            _split(batch, mini_batch), grad.split(mini_batch), rngs, strict=True
        )
    ]
    for k, (enc, part, g, rng) in enumerate(jobs):
        last = k == len(jobs) - 1
        sync = contextlib.nullcontext() if (no_sync is None or last) else no_sync()
        with sync, rng.replay(), torch.enable_grad():
            out = enc(part)
            out.backward(g.to(out.dtype))
    return loss.detach()
