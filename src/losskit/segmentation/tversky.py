"""Tversky and focal Tversky losses under the shared segmentation contract."""

from __future__ import annotations

import torch

from .._checks import check_range
from .._dispatch import Backends
from ._contract import check_smooth_eps, kept_weight, reduce_classes
from .dice import _check_common, _ratio, overlap_sums

__all__ = ["focal_tversky_loss", "tversky_loss"]


def check_alpha_beta(alpha: object, beta: object) -> tuple[float, float]:
    a = check_range("alpha", alpha, 0.0, finite=True)
    b = check_range("beta", beta, 0.0, finite=True)
    return a, b


def check_tversky_gamma(gamma: object) -> float:
    return check_range("gamma", gamma, 0.0, low_inclusive=False, finite=True)


def tversky_index(input, target, seg, batch_dice, alpha, beta, smooth, eps) -> torch.Tensor:
    """``(I + s) / max(I + α FP + β FN + s, ε)`` with ``FP = P - I``, ``FN = T - I``."""
    inter, p_sum, t_sum = overlap_sums(input, target, seg, batch_dice)
    den = inter + alpha * (p_sum - inter) + beta * (t_sum - inter) + smooth
    return _ratio(inter + smooth, den, eps)


def _tversky_formula(input, target, weight, seg, reduction, batch_dice, alpha, beta, smooth, eps):
    loss = 1.0 - tversky_index(input, target, seg, batch_dice, alpha, beta, smooth, eps)
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction).to(input.dtype)


_TVERSKY = Backends("tversky_loss", formula=_tversky_formula)


def tversky_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Tversky loss (Salehi et al.): Dice with false positives and false negatives weighted apart.

    With :math:`I = \sum_i p_{ic} t_{ic}`, :math:`FP = \sum_i p_{ic}(1 - t_{ic}) = P - I` and
    :math:`FN = \sum_i (1 - p_{ic}) t_{ic} = T - I` over the kept pixels of one image (all images
    with ``batch_dice``):

    .. math::
        \ell_{n,c} = 1 - \frac{I + s}{\max(I + \alpha\,FP + \beta\,FN + s,\ \epsilon)}

    ``alpha`` weighs false positives, ``beta`` false negatives (the paper recommends
    :math:`\alpha = 0.3, \beta = 0.7` for recall); :math:`\alpha = \beta = 1` is
    :func:`jaccard_loss`, :math:`\alpha = \beta = 1/2` is :func:`dice_loss` with ``smooth`` doubled.
    Other arguments, shapes, reductions and edge cases as :func:`dice_loss`.

    Conventions: MONAI ``TverskyLoss(alpha=a, beta=b, smooth_nr=s, smooth_dr=s, batch=k)`` is
    ``tversky_loss(..., alpha=a, beta=b, smooth=s, eps=0, batch_dice=k)`` (same roles of α, β);
    smp ``TverskyLoss("multiclass", alpha=a, beta=b, smooth=s, eps=e)`` is
    ``tversky_loss(..., batch_dice=True, smooth=s, eps=e)`` when every class is present (smp
    zeroes absent classes).

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> target = torch.randint(3, (2, 16, 16))
        >>> losskit.segmentation.tversky_loss(logits, target, alpha=0.3, beta=0.7).backward()

    Reference: S. S. M. Salehi et al., "Tversky loss function for image segmentation using 3D
    fully convolutional deep networks", MLMI 2017.
    """
    input, target, weight, seg, reduction, batch_dice = _check_common(
        input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
    )
    alpha, beta = check_alpha_beta(alpha, beta)
    smooth, eps = check_smooth_eps(smooth, eps)
    return _TVERSKY(input, target, weight, seg, reduction, batch_dice, alpha, beta, smooth, eps)


tversky_loss.backends = _TVERSKY  # type: ignore[attr-defined]


def _focal_tversky_formula(
    input, target, weight, seg, reduction, batch_dice, alpha, beta, gamma, smooth, eps
):
    base = 1.0 - tversky_index(input, target, seg, batch_dice, alpha, beta, smooth, eps)
    # x^gamma with a zero derivative at x = 0 (the pow's is infinite there for gamma < 1).
    positive = base > 0
    loss = torch.where(positive, torch.where(positive, base, 1.0) ** gamma, 0.0)
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction).to(input.dtype)


_FOCAL_TVERSKY = Backends("focal_tversky_loss", formula=_focal_tversky_formula)


def focal_tversky_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Focal Tversky loss (Abraham and Khan): the per-class Tversky loss raised to :math:`\gamma`.

    .. math::
        \ell_{n,c} = \big(1 - TI_{n,c}\big)^{\gamma}

    with :math:`TI` the Tversky index of :func:`tversky_loss`. The paper writes the exponent as
    :math:`1/\gamma_{paper}` and recommends :math:`\gamma_{paper} = 4/3`, :math:`\alpha = 0.3`,
    :math:`\beta = 0.7`: our defaults (``gamma=0.75``). The power is taken per class, before the
    mean over classes; at :math:`TI = 1` its derivative is 0 (not infinite for ``gamma < 1``).

    Args: as :func:`tversky_loss`, plus ``gamma > 0``.

    Conventions: smp ``TverskyLoss(..., gamma=g)`` raises the *class mean* to ``g``
    (:math:`(\mathrm{mean}_c (1 - TI_c))^{g}`), so it equals ours only for one class (binary
    mode: ``focal_tversky_loss(..., activation="sigmoid", batch_dice=True)``). MONAI has none.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> losskit.segmentation.focal_tversky_loss(logits, torch.randint(3, (2, 16, 16))).backward()

    Reference: N. Abraham and N. M. Khan, "A Novel Focal Tversky loss function with improved
    Attention U-Net for lesion segmentation", ISBI 2019.
    """
    input, target, weight, seg, reduction, batch_dice = _check_common(
        input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
    )
    alpha, beta = check_alpha_beta(alpha, beta)
    gamma = check_tversky_gamma(gamma)
    smooth, eps = check_smooth_eps(smooth, eps)
    return _FOCAL_TVERSKY(
        input, target, weight, seg, reduction, batch_dice, alpha, beta, gamma, smooth, eps
    )


focal_tversky_loss.backends = _FOCAL_TVERSKY  # type: ignore[attr-defined]
