"""Supervised contrastive loss (Khosla et al. 2020), several views per sample."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .._checks import check_bool
from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from . import _dist
from ._blocks import row_losses
from ._common import (
    check_chunk_size,
    check_group,
    check_labels,
    check_rows,
    check_temperature,
)

__all__ = ["CONTRAST_MODES", "supcon_loss"]

CONTRAST_MODES = ("all", "one")


def _supcon_formula(
    features, labels, temperature, base_temperature, mode, normalize, group, chunk, reduction
):
    f = upcast(features)
    if normalize:
        f = F.normalize(f, dim=2)
    n, v, d = f.shape
    ranks = _dist.ranks_of(n, f.device, group)
    offset = 0 if ranks is None else ranks.offset
    if labels is None:  # SimCLR: each sample its own class (unique across ranks)
        labels = torch.arange(n, device=f.device) + offset
    if ranks is None:
        all_f, all_y = f, labels
    else:
        all_f = _dist.gather(f.reshape(n, v * d), ranks).reshape(-1, v, d)
        all_y = _dist.gather(labels, ranks, with_grad=False)
    contrast = all_f.reshape(-1, d)  # sample-major: row s * V + view
    contrast_y = all_y.repeat_interleave(v)
    views = v if mode == "all" else 1
    anchors = f[:, :views].reshape(-1, d)
    anchor_y = labels.repeat_interleave(views)
    stride = 1 if mode == "all" else v
    # The anchor's own column (sample offset + i, view w) is neither a positive nor in the
    # denominator: column offset * V + a for anchor a ("all"), (offset + i) * V ("one").
    if chunk is None:
        loss = _plain_rows(anchors, contrast, anchor_y, contrast_y, offset * v, stride, temperature)
    else:  # block by block; the own column at offset * V + stride * anchor
        scale = torch.tensor(1.0 / temperature, dtype=f.dtype, device=f.device)
        loss = row_losses(
            anchors, contrast, scale, None, offset * v, "supcon", False, chunk,
            row_y=anchor_y, col_y=contrast_y, stride=stride,
        )  # fmt: skip
    loss = loss * (temperature / base_temperature)
    if mode == "all":
        loss = loss.reshape(n, views)
    count = (n if ranks is None else ranks.total) * views
    return _dist.finish(loss, reduction, ranks, count).to(features.dtype)


def _plain_rows(anchors, contrast, anchor_y, contrast_y, own_offset, stride, temperature):
    """Per-anchor ``LSE_{c != own} s_ac - mean_{p in P(a)} s_ap`` with plain autograd."""
    own = torch.arange(anchors.shape[0], device=anchors.device) * stride + own_offset
    logits = (anchors @ contrast.T) / temperature
    cols = torch.arange(contrast.shape[0], device=anchors.device)
    is_self = cols[None, :] == own[:, None]
    positive = (anchor_y[:, None] == contrast_y[None, :]) & ~is_self
    lse = torch.logsumexp(torch.where(is_self, -torch.inf, logits), 1)
    n_pos = positive.sum(1)
    mean_pos = torch.where(positive, logits, 0.0).sum(1) / n_pos.clamp_min(1)
    # Khosla et al.'s code: an anchor without positives has loss 0 (and counts in the mean).
    return torch.where(n_pos > 0, lse - mean_pos, 0.0)


_SUPCON = Backends("supcon_loss", formula=_supcon_formula)


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float = 0.1,
    base_temperature: float = 0.07,
    contrast_mode: str = "all",
    normalize: bool = True,
    group: dist.ProcessGroup | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Supervised contrastive loss: every view of a sample is pulled to all views of its class.

    The :math:`N V` views :math:`z_a` (``features`` flattened over the views, L2-normalised with
    ``normalize=True``) form the contrast set :math:`A`; for an anchor :math:`a` the positives
    :math:`P(a)` are the other views with its label:

    .. math::
        \ell_a = -\frac{\tau}{\tau_b}\, \frac{1}{|P(a)|} \sum_{p \in P(a)}
        \log \frac{e^{z_a \cdot z_p / \tau}}{\sum_{c \in A \setminus \{a\}} e^{z_a \cdot z_c / \tau}} .

    Anchors are every view (``contrast_mode="all"``) or the first view of each sample
    (``"one"``); the contrast set is always every view. ``labels=None`` is SimCLR (each sample
    its own class: the positives are its other views).

    Memory: with ``chunk_size=c`` no more than ``c`` anchor rows of the similarity matrix exist
    at once, in the forward and in the backward, so the batch size is bounded by the features,
    not by :math:`(NV)^2`; the value and gradients are those of the plain path (float64: to
    1e-10).

    Across ranks every rank computes its anchors against the global contrast set; the value is
    the global loss on every rank and after DDP averaging every rank holds the single-process
    gradient (:mod:`losskit.distributed`'s convention; uneven batches allowed).

    Args:
        features: ``(N, V, D)`` floating, ``V >= 1`` views per sample.
        labels: ``(N,)`` integer class labels, or ``None`` (SimCLR).
        temperature: :math:`\tau > 0`.
        base_temperature: :math:`\tau_b > 0` (the loss is scaled by :math:`\tau / \tau_b`, as in
            the authors' code; set it to ``temperature`` for no scaling).
        contrast_mode: ``"all" | "one"``.
        normalize: L2-normalise the features first (``False``: use them as given, as the
            authors' code, whose model normalises).
        group: the process group (default: the world when one is initialised).
        chunk_size: anchors per block (an int ``>= 1``), or ``None`` for the plain autograd
            path. The loss and its gradient are computed ``chunk_size`` anchors at a time
            against the whole global contrast set, keeping one log-sum-exp per anchor and
            recomputing each block in the backward (the machinery of :func:`clip_loss`): the
            largest temporaries are a few ``chunk_size × N_global V`` blocks instead of the
            ``N V × N_global V`` matrix. First-order only (no double backward).
        reduction: ``"none"`` (``(N, V)`` for ``"all"``, ``(N,)`` for ``"one"``), ``"mean"``
            (over anchors), ``"sum"``.

    Returns:
        A scalar, or the per-anchor losses; the dtype of ``features``.

    Edge cases: an anchor without positives (a class seen once with ``V = 1``) has loss 0 and
    counts in the mean (the authors' current code; their first version divided 0 by 0). An
    empty batch gives NaN for ``mean``.

    Example:
        >>> feats = torch.randn(8, 2, 16, requires_grad=True)  # 8 samples, 2 views
        >>> losskit.contrastive.supcon_loss(feats, torch.tensor([0, 1, 2, 3] * 2)).backward()
        >>> losskit.contrastive.supcon_loss(feats, None, chunk_size=4).backward()  # SimCLR

    References: Khosla et al., "Supervised Contrastive Learning" (NeurIPS 2020), :math:`L^{sup}_{out}`
    and github.com/HobbitLong/SupContrast ``SupConLoss``. pytorch-metric-learning's
    ``SupConLoss(temperature)`` on the flattened views is this loss with
    ``base_temperature=temperature``, except that it averages over the anchors with a non-zero
    loss (``AvgNonZeroReducer``), which differs only when some anchor has no positive.
    """
    f = check_rows("features", features, ndim=3)
    if labels is not None:
        labels = check_labels(labels, f.shape[0], f, "features")
    temperature = check_temperature("temperature", temperature)
    base_temperature = check_temperature("base_temperature", base_temperature)
    if not isinstance(contrast_mode, str) or contrast_mode not in CONTRAST_MODES:
        raise ValueError(f"contrast_mode must be one of {CONTRAST_MODES}, got {contrast_mode!r}")
    normalize = check_bool("normalize", normalize)
    check_group(group)
    chunk = check_chunk_size(chunk_size)
    reduction = check_reduction(reduction)
    return _SUPCON(
        f, labels, temperature, base_temperature, contrast_mode, normalize, group, chunk, reduction
    )


supcon_loss.backends = _SUPCON
