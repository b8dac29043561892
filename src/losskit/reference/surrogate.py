"""NumPy references of the binary surrogate losses (labels ``y`` in ``{-1, 1}``), with gradients.

Each loss is ``phi(y f)``; ``*_grad`` gives ``d sum(grad_output * loss) / d f = y phi'(y f) ...``.
"""

from __future__ import annotations

import numpy as np

from ._common import as_float, log_sigmoid, reduce, sigmoid, upstream

__all__ = [
    "exponential_loss",
    "exponential_loss_grad",
    "hinge_loss",
    "hinge_loss_grad",
    "logistic_loss",
    "logistic_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
    "zero_one_loss",
]


def _chain(g: np.ndarray, reduction: str, grad_output) -> np.ndarray:
    """Apply the reduction's scale and the upstream gradient to an element-wise derivative."""
    if reduction == "none":
        return g * upstream(grad_output, g.shape)
    scale = 1.0 / g.size if reduction == "mean" else 1.0
    return g * scale * float(upstream(grad_output, ()))


def hinge_loss(input, target, margin=1.0, reduction="mean"):
    """``max(0, margin - y f)``."""
    f, y = as_float(input), as_float(target)
    return reduce(np.maximum(0.0, margin - y * f), reduction)


def hinge_loss_grad(input, target, margin=1.0, reduction="mean", grad_output=None):
    """``-y`` where ``y f < margin``, else 0."""
    f, y = as_float(input), as_float(target)
    return _chain(np.where(margin - y * f > 0, -y, 0.0), reduction, grad_output)


def squared_hinge_loss(input, target, margin=1.0, reduction="mean"):
    """``max(0, margin - y f)^2``."""
    f, y = as_float(input), as_float(target)
    return reduce(np.maximum(0.0, margin - y * f) ** 2, reduction)


def squared_hinge_loss_grad(input, target, margin=1.0, reduction="mean", grad_output=None):
    """``-2 y max(0, margin - y f)``."""
    f, y = as_float(input), as_float(target)
    return _chain(-2.0 * y * np.maximum(0.0, margin - y * f), reduction, grad_output)


def exponential_loss(input, target, reduction="mean"):
    """``exp(-y f)``."""
    f, y = as_float(input), as_float(target)
    with np.errstate(over="ignore"):
        return reduce(np.exp(-y * f), reduction)


def exponential_loss_grad(input, target, reduction="mean", grad_output=None):
    """``-y exp(-y f)``."""
    f, y = as_float(input), as_float(target)
    with np.errstate(over="ignore"):
        return _chain(-y * np.exp(-y * f), reduction, grad_output)


def logistic_loss(input, target, reduction="mean"):
    """``log(1 + exp(-y f)) = -log σ(y f)``, with log σ computed stably."""
    f, y = as_float(input), as_float(target)
    return reduce(-log_sigmoid(y * f), reduction)


def logistic_loss_grad(input, target, reduction="mean", grad_output=None):
    """``-y σ(-y f)``."""
    f, y = as_float(input), as_float(target)
    return _chain(-y * sigmoid(-y * f), reduction, grad_output)


def zero_one_loss(input, target, reduction="mean"):
    """``1`` where ``y f <= 0`` (or ``f`` is NaN), else ``0``."""
    f, y = as_float(input), as_float(target)
    with np.errstate(invalid="ignore"):
        wrong = ~(y * f > 0)
    return reduce(wrong.astype(np.float64), reduction)
