"""Boundary loss (Kervadec et al.) and the signed distance maps it takes (SciPy, optional)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_bool, check_int, check_tensor
from .._dispatch import Backends
from .._precision import upcast
from ._contract import activate, check_seg, kept_weight, reduce_classes
from ._contract import sum_dims as _dims

__all__ = ["boundary_loss", "signed_distance_map"]


def _scipy_ndimage():
    try:
        from scipy import ndimage
    except ImportError as err:  # an optional dependency: say how to get it
        raise ImportError(
            "losskit.segmentation.signed_distance_map needs SciPy "
            "(pip install 'losskit[boundary]' or pip install scipy)"
        ) from err
    return ndimage


def signed_distance_map(
    target: torch.Tensor,
    num_classes: int | None = None,
    *,
    spacing: Sequence[float] | None = None,
) -> torch.Tensor:
    r"""Signed Euclidean distance to each class's boundary, negative inside (Kervadec et al.).

    For a binary mask :math:`G` of one image and class,

    .. math::
        \phi(q) = \begin{cases} d(q, \partial G) & q \notin G \\ -(d(q, \partial G) - 1) & q \in G
        \end{cases}

    where for :math:`q \notin G`, :math:`d(q, \partial G)` is the distance to the nearest pixel of
    :math:`G`, and for :math:`q \in G` the distance to the nearest pixel outside :math:`G` (so a
    boundary pixel inside is 0 and its outer neighbour 1). A mask that is empty (or full) gives
    zeros: there is no boundary to move towards. Computed on the CPU with
    :func:`scipy.ndimage.distance_transform_edt` (SciPy is an optional dependency).

    Args:
        target: class indices ``(N, d1, ..., dK)`` (give ``num_classes``) or masks
            ``(N, C, d1, ..., dK)`` (bool, or 0/1 of any dtype).
        num_classes: the number of classes of an index target.
        spacing: the pixel size along each spatial dimension (default 1).

    Returns:
        float32 ``(N, C, d1, ..., dK)`` on ``target``'s device; a constant for the loss (no grad).

    Example:
        >>> masks = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        >>> masks[0, 0, 2:5, 2:5] = True
        >>> phi = losskit.segmentation.signed_distance_map(masks)

    Reference: H. Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019
    (their ``one_hot2dist``).
    """
    target = check_tensor("target", target)
    if target.is_floating_point() and num_classes is not None:
        raise TypeError("num_classes is for class-index targets; masks must not set it")
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if target.is_floating_point() or target.dtype == torch.bool or target.dim() < 2:
            raise TypeError(
                "an index target must be an integer tensor (N, d1, ..., dK), got "
                f"dtype {target.dtype} and shape {tuple(target.shape)}"
            )
        idx = target.detach().cpu().numpy()
        if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
            raise IndexError(
                f"class indices must be in [0, {num_classes}), got {idx.min()}..{idx.max()}"
            )
        masks = idx[:, None] == np.arange(num_classes).reshape(1, -1, *([1] * (idx.ndim - 1)))
    else:
        if target.dim() < 3:
            raise ValueError(
                "masks must be (N, C, d1, ..., dK) (or give num_classes for an index target), got "
                f"shape {tuple(target.shape)}"
            )
        masks = target.detach().cpu().numpy() > 0.5
    spatial = masks.ndim - 2
    if spacing is not None and len(spacing) != spatial:
        raise ValueError(
            f"spacing must have {spatial} entries (one per spatial dim), got {spacing}"
        )
    ndimage = _scipy_ndimage()
    out = np.zeros(masks.shape, dtype=np.float32)
    for n in range(masks.shape[0]):
        for c in range(masks.shape[1]):
            pos = masks[n, c]
            if not pos.any() or pos.all():
                continue
            neg = ~pos
            outside = ndimage.distance_transform_edt(neg, sampling=spacing)
            inside = ndimage.distance_transform_edt(pos, sampling=spacing)
            out[n, c] = outside * neg - (inside - 1.0) * pos
    return torch.from_numpy(out).to(target.device)


def _boundary_formula(input, distance, weight, seg, reduction, batch_dice):
    p = activate(upcast(input), seg.activation)
    d = distance.detach().to(p.dtype)
    p, d = p.reshape(p.shape[0], p.shape[1], -1), d.reshape(p.shape[0], p.shape[1], -1)
    if not seg.include_background:
        p, d = p[:, 1:], d[:, 1:]
    loss = (p * d).mean(_dims(batch_dice))
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction).to(input.dtype)


_BOUNDARY = Backends("boundary_loss", formula=_boundary_formula)


def boundary_loss(
    input: torch.Tensor,
    distance: torch.Tensor,
    *,
    activation: str | None = "softmax",
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Boundary loss (Kervadec et al.): the mean of the probabilities weighted by the signed
    distance to the target's boundary.

    .. math::
        \ell_{n,c} = \frac{1}{|\Omega|} \sum_{q \in \Omega} \phi_{n,c}(q)\, p_{n,c}(q)

    with :math:`\phi` from :func:`signed_distance_map` (negative inside the target, so the loss
    decreases as probability moves inside it, and is minimal, negative, at the target itself).
    ``mean`` is the weighted mean over classes, then images, as :func:`dice_loss`.

    Args:
        input: logits ``(N, C, d1, ..., dK)`` (probabilities with ``activation=None``).
        distance: signed distance maps of ``input``'s shape (a constant: no gradient).
        activation, include_background, weight, batch_dice: as :func:`dice_loss` (Kervadec et al.
            use the foreground classes only: ``include_background=False``).
        reduction: ``"none"`` (``(N, C')``; ``(C',)`` with ``batch_dice``), ``"mean"``, ``"sum"``.

    Returns:
        A scalar, or the per-class losses for ``"none"``; the dtype of ``input``.

    Edge cases: the loss can be negative; the paper pairs it with a regional loss, e.g.
    ``dice_loss(...) + lam * boundary_loss(...)`` with ``lam`` growing during training. There is
    no ``ignore_index``: give ignored pixels a distance of 0. Neither MONAI nor smp has this loss.

    Example:
        >>> target = torch.randint(2, (2, 16, 16))
        >>> phi = losskit.segmentation.signed_distance_map(target, num_classes=2)
        >>> logits = torch.randn(2, 2, 16, 16, requires_grad=True)
        >>> losskit.segmentation.boundary_loss(logits, phi, include_background=False).backward()

    Reference: H. Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019
    (Medical Image Analysis 2021).
    """
    input, distance, weight, seg, reduction = check_seg(
        input,
        distance,
        activation=activation,
        ignore_index=None,
        include_background=include_background,
        weight=weight,
        reduction=reduction,
        index_targets=False,
        target_name="distance",
        probability_target=False,
    )
    batch_dice = check_bool("batch_dice", batch_dice)
    return _BOUNDARY(input, distance, weight, seg, reduction, batch_dice)


boundary_loss.backends = _BOUNDARY  # type: ignore[attr-defined]
