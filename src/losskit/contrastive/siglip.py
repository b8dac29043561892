"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023), all-gather or neighbour-exchange form."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from . import _dist
from ._blocks import row_losses
from ._common import check_chunk_size, check_group, check_pair, check_scalar

__all__ = ["SIGLIP_DISTRIBUTED", "siglip_loss"]

SIGLIP_DISTRIBUTED = ("all_gather", "neighbour_exchange")


def _siglip_formula(img, txt, scale, bias, distributed, group, chunk, reduction):
    a, t = upcast(img), upcast(txt)
    s = scale.to(a.dtype)
    bias = None if bias is None else bias.to(a.dtype)
    ranks = _dist.ranks_of(a.shape[0], a.device, group)
    if ranks is None:
        rows = row_losses(a, t, s, bias, 0, "sigmoid", chunk=chunk)
    elif distributed == "all_gather":
        all_t = _dist.gather(t, ranks)
        rows = row_losses(a, all_t, s, bias, ranks.offset, "sigmoid", chunk=chunk)
    else:
        # The text blocks travel round the ring: after k shifts this rank holds rank (r - k)'s.
        rows = row_losses(a, t, s, bias, 0, "sigmoid", chunk=chunk)
        block = t
        for k in range(1, ranks.world):
            block = _dist.shift_right(block, ranks, ranks.rank - k)
            rows = rows + row_losses(a, block, s, bias, -1, "sigmoid", chunk=chunk)
    count = a.shape[0] if ranks is None else ranks.total
    return _dist.finish(rows, reduction, ranks, count).to(img.dtype)


_SIGLIP = Backends("siglip_loss", formula=_siglip_formula)


def siglip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None,
    *,
    distributed: str = "all_gather",
    group: dist.ProcessGroup | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""SigLIP's sigmoid loss: every image-text pair is an independent binary classification.

    With :math:`S_{ij} = s\, x_i \cdot t_j + b` over the global batch of :math:`N` pairs and
    :math:`z_{ij} = 1` for :math:`i = j`, :math:`-1` otherwise:

    .. math::
        \ell_i = -\sum_{j=1}^{N} \log \sigma(z_{ij} S_{ij}), \qquad
        L = \frac1N \sum_i \ell_i .

    Each rank computes its ``B_local × B_global`` rows; the value is :math:`L` on every rank and,
    after DDP's gradient averaging, every rank holds the gradient of the single-process loss on
    the concatenated batch (:mod:`losskit.distributed`'s convention; uneven batches allowed).
    ``distributed="all_gather"`` gathers every rank's text features (with gradient) in one
    collective; ``"neighbour_exchange"`` passes the text blocks round the ring with
    point-to-point ``isend``/``irecv`` (``W - 1`` shifts, the gradient travelling back the same
    way), so a rank never holds more than two text blocks — open_clip's ``"shift"`` form.

    ``chunk_size=c`` computes the rows ``c`` at a time (recomputed in the backward; first-order
    only), so no more than a few ``c × B_block`` blocks of :math:`S` exist at once.

    Args:
        image_features: ``(B, D)`` (used as given; SigLIP normalises them in the model).
        text_features: ``(B, D)``; row ``i`` is the positive of image ``i``.
        logit_scale: :math:`s` itself (the model passes ``exp(t')``; the paper initialises
            :math:`t' = \log 10`): a number or a one-element tensor.
        logit_bias: :math:`b` (the paper initialises it at -10), or ``None`` for no bias.
        distributed: ``"all_gather" | "neighbour_exchange"``.
        group: the process group (default: the world when one is initialised).
        chunk_size: rows per block, or ``None`` for the plain autograd path.
        reduction: ``"mean"`` (:math:`L`, the paper's and open_clip's normalisation by the
            batch size), ``"sum"``, or ``"none"``: :math:`\ell_i` for the global batch ``(N,)``.

    Returns:
        A scalar, or ``(N,)``; the dtype of ``image_features``.

    Edge cases: an empty batch gives NaN for ``mean``, 0 for ``sum``.

    Example:
        >>> img = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
        >>> txt = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
        >>> t, b = torch.tensor(10.0).log().requires_grad_(), torch.tensor(-10.0, requires_grad=True)
        >>> losskit.contrastive.siglip_loss(img, txt, t.exp(), b).backward()

    References: Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for Language Image
    Pre-Training" (ICCV 2023); open_clip ``SigLipLoss`` (3.x). Differences from open_clip: its
    per-rank value is that rank's rows divided by its own batch size (different on every rank;
    equal DDP gradients for equal batch sizes), its default exchange is bidirectional
    (``"bidir"``: half the steps, two blocks in flight), and it assumes equal batch sizes.
    """
    img, txt = check_pair("image_features", image_features, "text_features", text_features)
    scale = check_scalar("logit_scale", logit_scale, img, "image_features")
    bias = (
        None
        if logit_bias is None
        else check_scalar("logit_bias", logit_bias, img, "image_features")
    )
    if not isinstance(distributed, str) or distributed not in SIGLIP_DISTRIBUTED:
        raise ValueError(f"distributed must be one of {SIGLIP_DISTRIBUTED}, got {distributed!r}")
    check_group(group)
    chunk = check_chunk_size(chunk_size)
    reduction = check_reduction(reduction)
    return _SIGLIP(img, txt, scale, bias, distributed, group, chunk, reduction)


siglip_loss.backends = _SIGLIP
