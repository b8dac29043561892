"""CLIP's symmetric cross entropy over the global batch (open_clip's ``ClipLoss`` semantics)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .._checks import check_bool
from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction, reduce
from . import _dist
from ._blocks import row_losses
from ._common import check_chunk_size, check_group, check_pair, check_scalar

__all__ = ["clip_loss"]


def _square(a, b, scale, bias, chunk):
    """``(N,)`` per-pair losses of the whole ``N × N`` matrix, both directions."""
    return row_losses(a, b, scale, bias, 0, "softmax", both=True, chunk=chunk)


def _clip_formula(img, txt, scale, bias, local_loss, gather_with_grad, group, chunk, reduction):
    a, b = upcast(img), upcast(txt)
    s = scale.to(a.dtype)
    bias = None if bias is None else bias.to(a.dtype)
    ranks = _dist.ranks_of(a.shape[0], a.device, group)
    if ranks is None:
        return reduce(_square(a, b, s, bias, chunk), reduction).to(img.dtype)
    d, off, n = a.shape[1], ranks.offset, a.shape[0]
    both = _dist.gather(torch.cat([a, b], 1), ranks, gather_with_grad)
    all_a, all_b = both[:, :d], both[:, d:]
    if not gather_with_grad and not local_loss:
        # open_clip: this rank's own slices keep their gradient inside the gathered batch.
        all_a = torch.cat([all_a[:off], a, all_a[off + n :]])
        all_b = torch.cat([all_b[:off], b, all_b[off + n :]])
    if not local_loss:  # every rank computes the whole N × N matrix: the same loss everywhere
        return reduce(_square(all_a, all_b, s, bias, chunk), reduction).to(img.dtype)
    rows = 0.5 * (
        row_losses(a, all_b, s, bias, off, "softmax", chunk=chunk)
        + row_losses(b, all_a, s, bias, off, "softmax", chunk=chunk)
    )
    if not gather_with_grad:  # open_clip's local mean, a different value on every rank
        return reduce(rows, reduction).to(img.dtype)
    return _dist.finish(rows, reduction, ranks, ranks.total).to(img.dtype)


_CLIP = Backends("clip_loss", formula=_clip_formula)


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    logit_bias: torch.Tensor | float | None = None,
    local_loss: bool = True,
    gather_with_grad: bool = True,
    group: dist.ProcessGroup | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""CLIP's contrastive loss: symmetric cross entropy over the image-text similarities.

    With :math:`S_{ij} = s\, x_i \cdot t_j + b` over the global batch of :math:`N` pairs
    (every rank's rows, rank 0's first):

    .. math::
        \ell_i = \tfrac12\Big[\big(\log\textstyle\sum_j e^{S_{ij}} - S_{ii}\big)
               + \big(\log\textstyle\sum_j e^{S_{ji}} - S_{ii}\big)\Big],
        \qquad L = \tfrac1N \textstyle\sum_i \ell_i .

    The features are used as given (CLIP normalises them in the model; so does open_clip).

    Across ranks (an initialised process group, or ``group``): with ``local_loss=True`` each rank
    computes only its ``B_local × B_global`` rows of :math:`S` for each direction; every rank
    gets the global loss :math:`L` as its value, and after DDP's gradient averaging every rank
    holds the gradient of the single-process loss on the concatenated batch (the convention of
    :mod:`losskit.distributed`; ranks may hold different batch sizes). ``local_loss=False``
    computes the whole ``N × N`` matrix on every rank: same value and gradient, more work.
    ``gather_with_grad=False`` reproduces open_clip's gather without gradient: other ranks'
    features are constants, so the gradient is *not* the single-process one (with
    ``local_loss=True`` the terms where this rank's samples are other ranks' negatives are
    missing, and the value is this rank's local mean, as open_clip's).

    Memory: ``chunk_size=c`` computes the rows ``c`` at a time (a custom autograd Function that
    keeps only the log-sum-exp of each row and column and recomputes the blocks in its
    backward), so the largest temporary is a few ``c × B_global`` blocks instead of the
    ``B_local × B_global`` matrix. The chunked path is first-order only (no double backward).

    Args:
        image_features: ``(B, D)`` this rank's image embeddings (row ``i`` pairs with text ``i``).
        text_features: ``(B, D)``.
        logit_scale: :math:`s`, the multiplier itself (open_clip passes
            ``model.logit_scale.exp()``): a number or a one-element tensor (learnable).
        logit_bias: :math:`b`, optional number or one-element tensor (as open_clip's).
        local_loss, gather_with_grad: open_clip's options (see above).
        group: the process group (default: the world when one is initialised).
        chunk_size: rows per block, or ``None`` for the plain autograd path.
        reduction: ``"mean"`` (:math:`L`, open_clip's value), ``"sum"``, or ``"none"``: the
            per-pair losses :math:`\ell_i` of the global batch ``(N,)`` (on every rank).

    Returns:
        A scalar, or ``(N,)``; the dtype of ``image_features`` (float32 accumulation for half).

    Edge cases: an empty batch gives NaN for ``mean`` (as torch) and 0 for ``sum``.

    Example:
        >>> img = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
        >>> txt = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
        >>> scale = torch.tensor(1 / 0.07, requires_grad=True)
        >>> losskit.contrastive.clip_loss(img, txt, scale, chunk_size=4).backward()

    References: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision" (ICML 2021); open_clip ``ClipLoss`` (3.x). Differences from open_clip: labels
    are offset by every rank's actual batch size (open_clip assumes equal ones), and the value
    with ``local_loss=True`` is the global loss on every rank instead of each rank's local mean
    (for equal batch sizes the DDP-averaged gradients are the same; for unequal ones open_clip
    weighs each rank's rows by ``1 / B_local``).
    """
    img, txt = check_pair("image_features", image_features, "text_features", text_features)
    scale = check_scalar("logit_scale", logit_scale, img, "image_features")
    bias = None
    if logit_bias is not None:
        bias = check_scalar("logit_bias", logit_bias, img, "image_features")
    local_loss = check_bool("local_loss", local_loss)
    gather_with_grad = check_bool("gather_with_grad", gather_with_grad)
    check_group(group)
    chunk = check_chunk_size(chunk_size)
    reduction = check_reduction(reduction)
    return _CLIP(img, txt, scale, bias, local_loss, gather_with_grad, group, chunk, reduction)


clip_loss.backends = _CLIP
