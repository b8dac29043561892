"""Margin-based surrogate losses of binary classification, with labels ``y`` in ``{-1, 1}``.

Each loss is a function of the margin :math:`m = y f` of a real-valued score (logit) ``f``:
hinge :math:`\\max(0, 1 - m)` (SVM), squared hinge, exponential :math:`e^{-m}` (AdaBoost),
logistic :math:`\\log(1 + e^{-m})` (logistic regression), and the 0-1 loss
:math:`\\mathbb{1}[m \\le 0]` they all upper-bound (a metric, not differentiable).
See e.g. P. L. Bartlett, M. I. Jordan, J. D. McAuliffe, "Convexity, Classification, and Risk
Bounds", JASA 2006, and Hastie, Tibshirani, Friedman, "The Elements of Statistical Learning",
section 10.6.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import (
    any_true,
    check_floating,
    check_number,
    check_same_shape,
    check_tensor,
    value_checks_enabled,
)
from ._precision import upcast
from ._reduction import check_reduction, reduce

__all__ = [
    "exponential_loss",
    "hinge_loss",
    "logistic_loss",
    "squared_hinge_loss",
    "zero_one_loss",
]


def check_margin(margin: object) -> float:
    """``margin`` must be a finite real number ``>= 0`` (shared with the Module constructors)."""
    m = check_number("margin", margin)
    if not (0.0 <= m < math.inf):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return m


def _check_signed_pair(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must be a floating or integer tensor of labels -1 or 1, got {target.dtype}"
        )
    check_same_shape("input", input, "target", target)
    if value_checks_enabled() and target.numel() > 0:
        bad = (target != 1) & (target != -1)
        if any_true(bad):
            first = target[bad].flatten()[0].item()
            raise ValueError(
                f"target must contain only -1 and 1 (labels y in {{-1, 1}}), found {first!r}"
            )
    return input, target


def _margin(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``y * f`` in the compute dtype (exact: ``y`` is ±1)."""
    x = upcast(input)
    return target.to(x.dtype) * x


def hinge_loss(
    input: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Hinge loss of binary classification (the SVM loss).

    .. math:: \ell = \max(0,\ \mathrm{margin} - y f)

    Args:
        input: real-valued scores (logits) ``f``, any shape.
        target: labels ``y`` in ``{-1, 1}``, same shape as ``input`` (floating or integer).
        margin: the margin :math:`\ge 0` (``1`` is the SVM hinge, ``0`` the perceptron loss).
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"`` over all elements.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: at the kink :math:`y f = \mathrm{margin}` the gradient is 0 (the subgradient of
    ``relu`` at 0). An empty input gives NaN for ``mean`` and 0 for ``sum``. A target other
    than ±1 raises ``ValueError`` (a value check, see :func:`losskit.set_checks`).

    Example:
        >>> f = torch.randn(16, requires_grad=True)
        >>> y = torch.randint(2, (16,)).float() * 2 - 1
        >>> losskit.hinge_loss(f, y).backward()

    Reference: C. Cortes, V. Vapnik, "Support-Vector Networks", Machine Learning 1995. Equals
    :func:`torch.nn.functional.margin_ranking_loss` with ``input2 = 0``.
    """
    input, target = _check_signed_pair(input, target)
    margin = check_margin(margin)
    reduction = check_reduction(reduction)
    loss = F.relu(margin - _margin(input, target))
    return reduce(loss, reduction).to(input.dtype)


def squared_hinge_loss(
    input: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Squared hinge loss of binary classification (L2-SVM): differentiable everywhere.

    .. math:: \ell = \max(0,\ \mathrm{margin} - y f)^2

    Args:
        input: real-valued scores (logits) ``f``, any shape.
        target: labels ``y`` in ``{-1, 1}``, same shape as ``input`` (floating or integer).
        margin: the margin :math:`\ge 0`.
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"`` over all elements.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: an empty input gives NaN for ``mean`` and 0 for ``sum``; a target other than
    ±1 raises ``ValueError`` (a value check).

    Example:
        >>> losskit.squared_hinge_loss(torch.randn(8), torch.tensor([1.0, -1.0] * 4))

    Reference: the L2-SVM loss of e.g. R.-E. Fan et al., "LIBLINEAR", JMLR 2008.
    """
    input, target = _check_signed_pair(input, target)
    margin = check_margin(margin)
    reduction = check_reduction(reduction)
    loss = F.relu(margin - _margin(input, target)).square()
    return reduce(loss, reduction).to(input.dtype)


def exponential_loss(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""Exponential loss of binary classification (the loss AdaBoost minimises).

    .. math:: \ell = e^{-y f}

    Args:
        input: real-valued scores (logits) ``f``, any shape.
        target: labels ``y`` in ``{-1, 1}``, same shape as ``input`` (floating or integer).
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"`` over all elements.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: the loss grows without bound and overflows to ``inf`` (value and gradient) once
    :math:`-y f` exceeds the log of the largest float (about 88.7 in float32 and for
    float16/bfloat16 inputs, which compute in float32, 709.8 in float64): that is the loss, not a
    bug, and the reason boosting is sensitive to outliers. An empty input gives NaN for ``mean``
    and 0 for ``sum``; a target other than ±1 raises ``ValueError`` (a value check).

    Example:
        >>> losskit.exponential_loss(torch.randn(8), torch.tensor([1.0, -1.0] * 4))

    Reference: J. Friedman, T. Hastie, R. Tibshirani, "Additive Logistic Regression: a
    Statistical View of Boosting", Annals of Statistics 2000.
    """
    input, target = _check_signed_pair(input, target)
    reduction = check_reduction(reduction)
    loss = torch.exp(-_margin(input, target))
    return reduce(loss, reduction).to(input.dtype)


def logistic_loss(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""Logistic loss of binary classification with ±1 labels, in the numerically stable form.

    .. math:: \ell = \log(1 + e^{-y f}) = -\log\sigma(y f)

    (natural log; divide by :math:`\log 2` for the base-2 form that upper-bounds the 0-1 loss).

    Args:
        input: real-valued scores (logits) ``f``, any shape.
        target: labels ``y`` in ``{-1, 1}``, same shape as ``input`` (floating or integer).
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"`` over all elements.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: finite loss and gradient for any finite score (±1e4 included), where
    :func:`torch.nn.functional.soft_margin_loss` overflows to ``inf`` with a NaN gradient. An
    empty input gives NaN for ``mean`` and 0 for ``sum``; a target other than ±1 raises
    ``ValueError`` (a value check).

    Example:
        >>> losskit.logistic_loss(torch.randn(8), torch.tensor([1.0, -1.0] * 4))

    Same values as :func:`torch.nn.functional.soft_margin_loss`; equal to
    :func:`losskit.binary_cross_entropy_with_logits` with the target ``(y + 1) / 2``.
    """
    input, target = _check_signed_pair(input, target)
    reduction = check_reduction(reduction)
    loss = -F.logsigmoid(_margin(input, target))
    return reduce(loss, reduction).to(input.dtype)


def zero_one_loss(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""0-1 loss (misclassification indicator): a metric, not a differentiable loss.

    .. math:: \ell = \mathbb{1}[\,y f \le 0\,]

    ``reduction="mean"`` gives the error rate. Its derivative is 0 almost everywhere, so it
    cannot be trained with gradients; the other surrogates of this module are convex upper
    bounds of it. The result never requires grad (it is computed under ``torch.no_grad``).

    Args:
        input: real-valued scores (logits) ``f``, any shape.
        target: labels ``y`` in ``{-1, 1}``, same shape as ``input`` (floating or integer).
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"`` over all elements.

    Returns:
        0/1 per element (or their mean / sum), in the dtype of ``input``, without grad.

    Edge cases: a score of exactly 0 counts as an error (the tie is not a correct
    prediction), and so does a NaN score. An empty input gives NaN for ``mean`` and 0 for
    ``sum``; a target other than ±1 raises ``ValueError`` (a value check).

    Example:
        >>> losskit.zero_one_loss(torch.tensor([2.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, -1.0]))
        tensor(0.6667)
    """
    input, target = _check_signed_pair(input, target)
    reduction = check_reduction(reduction)
    with torch.no_grad():
        # not (y f > 0) rather than (y f <= 0): a NaN score is an error, not a correct answer.
        loss = (~(_margin(input, target) > 0)).to(upcast(input).dtype)
        return reduce(loss, reduction).to(input.dtype)
