"""Regression losses mirroring ``torch.nn.functional``: L1, MSE, smooth L1, Huber, Poisson and
Gaussian negative log-likelihood.

Each function validates its arguments (see :mod:`losskit._checks`), then calls its
:class:`~losskit._dispatch.Backends` record: torch's native op, computed in float32 around it for
float16/bfloat16 inputs and returned in the input's dtype. ``poisson_nll_loss(full=True)`` keeps
losskit's formula (finite target gradient) by default. Unlike torch, ``input`` and ``target`` of
different shapes raise ``ValueError`` instead of being broadcast after a warning.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as _F

from ._checks import (
    any_true,
    check_bool,
    check_floating,
    check_number,
    check_optional_floating,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    value_checks_enabled,
)
from ._dispatch import Backends, state
from ._precision import compute_as, compute_input, restore, upcast
from ._reduction import REDUCTION_ENUM, check_reduction, reduce, weighted_mean

__all__ = [
    "gaussian_nll_loss",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_nn = torch._C._nn


# ---------------------------------------------------------------- shared checks and reductions


def _check_pair(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    input = check_floating("input", input)
    target = check_floating("target", target)
    check_same_shape("input", input, "target", target)
    return input, target


def _check_elementwise_weight(weight: object, input: torch.Tensor) -> torch.Tensor | None:
    """An optional per-element weight: floating, exactly ``input``'s shape (as torch), same device."""
    weight = check_optional_floating("weight", weight)
    if weight is None:
        return None
    if weight.shape != input.shape:
        raise ValueError(
            "Weights and input must have the same size; got weight of shape "
            f"{tuple(weight.shape)} for input of shape {tuple(input.shape)}"
        )
    check_same_device("weight", weight, input)
    return weight


def _reduce_normalised(
    loss: torch.Tensor, weight: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    """Weighted reduction of L1/MSE: ``mean`` is ``sum(w * l) / sum(w)`` (torch's rule)."""
    if weight is None:
        return reduce(loss, reduction)
    loss = loss * weight
    return weighted_mean(loss, weight) if reduction == "mean" else reduce(loss, reduction)


# ---------------------------------------------------------------- L1 / MSE


def l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean absolute error, optionally weighted per element.

    .. math:: \ell_i = w_i\, |x_i - y_i|

    Args:
        input: predictions, any shape, floating.
        target: same shape as ``input``, floating.
        reduction: ``"none" | "mean" | "sum"``. Unweighted ``mean`` divides by the number of
            elements; weighted ``mean`` is :math:`\sum_i w_i |x_i - y_i| / \sum_i w_i`.
        weight: optional per-element weight of ``input``'s shape (not broadcast, as torch).

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): an empty input gives NaN for ``mean`` (also weighted: 0 / 0) and 0 for
    ``sum``. The gradient at :math:`x_i = y_i` is 0 (the sign function's subgradient).

    Example:
        >>> losskit.l1_loss(torch.tensor([1.0, -2.0]), torch.zeros(2))
        tensor(1.5000)

    Mirrors :func:`torch.nn.functional.l1_loss` (without ``size_average``/``reduce``).
    """
    input, target = _check_pair(input, target)
    reduction = check_reduction(reduction)
    weight = _check_elementwise_weight(weight, input)
    return _L1(input, target, reduction, weight)


def _pointwise_torch(op, input, target, reduction, weight, *extra):
    """A native point-wise loss ``op(x, y, reduction_enum, *extra)``; weighted: torch's own rule
    (``mean`` is ``sum(w l) / sum(w)``), on the unreduced native loss."""
    x = compute_input(input)
    y = compute_as(target, x.dtype)
    if weight is None:
        return restore(op(x, y, REDUCTION_ENUM[reduction], *extra), input.dtype)
    loss = op(x, y, 0, *extra)
    return restore(_reduce_normalised(loss, compute_as(weight, x.dtype), reduction), input.dtype)


def _l1_torch(input, target, reduction, weight):
    return _pointwise_torch(_nn.l1_loss, input, target, reduction, weight)


_L1 = Backends("l1_loss", torch=_l1_torch)
l1_loss.backends = _L1


def mse_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean squared error, optionally weighted per element.

    .. math:: \ell_i = w_i\, (x_i - y_i)^2

    Args:
        input: predictions, any shape, floating.
        target: same shape as ``input``, floating.
        reduction: ``"none" | "mean" | "sum"``. Weighted ``mean`` is
            :math:`\sum_i w_i (x_i - y_i)^2 / \sum_i w_i`.
        weight: optional per-element weight of ``input``'s shape (not broadcast, as torch).

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): an empty input gives NaN for ``mean`` and 0 for ``sum``.

    Example:
        >>> losskit.mse_loss(torch.tensor([1.0, -2.0]), torch.zeros(2))
        tensor(2.5000)

    Mirrors :func:`torch.nn.functional.mse_loss` (without ``size_average``/``reduce``).
    """
    input, target = _check_pair(input, target)
    reduction = check_reduction(reduction)
    weight = _check_elementwise_weight(weight, input)
    return _MSE(input, target, reduction, weight)


def _mse_torch(input, target, reduction, weight):
    return _pointwise_torch(_nn.mse_loss, input, target, reduction, weight)


_MSE = Backends("mse_loss", torch=_mse_torch)
mse_loss.backends = _MSE


# ---------------------------------------------------------------- smooth L1 / Huber


def smooth_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    beta: float = 1.0,
) -> torch.Tensor:
    r"""Smooth L1 loss: quadratic below ``beta``, linear above (Fast R-CNN's box loss).

    With :math:`d_i = |x_i - y_i|`:

    .. math::
        \ell_i = \begin{cases} 0.5\, d_i^2 / \beta & d_i < \beta \\
                               d_i - 0.5\,\beta & \text{otherwise} \end{cases}

    ``beta = 0`` is exactly the L1 loss. :func:`huber_loss` with ``delta = beta`` equals
    ``beta * smooth_l1_loss``.

    Args:
        input: predictions, any shape, floating.
        target: same shape as ``input``, floating.
        reduction: ``"none" | "mean" | "sum"``.
        beta: the threshold, ``>= 0``; a negative value raises ``ValueError``.

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): empty ``mean`` is NaN, ``sum`` is 0; the gradient at ``d = beta`` is
    the linear branch's (:math:`\pm 1`), at ``d = 0`` it is 0.

    Example:
        >>> losskit.smooth_l1_loss(torch.tensor([0.5, 2.0]), torch.zeros(2), reduction="none")
        tensor([0.1250, 1.5000])

    Mirrors :func:`torch.nn.functional.smooth_l1_loss`; Girshick, "Fast R-CNN", ICCV 2015.
    """
    input, target = _check_pair(input, target)
    reduction = check_reduction(reduction)
    beta = check_range("beta", beta, 0.0)
    return _SMOOTH_L1(input, target, reduction, beta)


def _smooth_l1_torch(input, target, reduction, beta):
    if beta == 0.0:  # exactly L1, as torch (the native op would divide by beta = 0)
        return _pointwise_torch(_nn.l1_loss, input, target, reduction, None)
    return _pointwise_torch(_nn.smooth_l1_loss, input, target, reduction, None, beta)


_SMOOTH_L1 = Backends("smooth_l1_loss", torch=_smooth_l1_torch)
smooth_l1_loss.backends = _SMOOTH_L1


def huber_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Huber loss: quadratic below ``delta``, ``delta``-scaled linear above.

    With :math:`d_i = |x_i - y_i|`:

    .. math::
        \ell_i = w_i \begin{cases} 0.5\, d_i^2 & d_i < \delta \\
                                   \delta\,(d_i - 0.5\,\delta) & \text{otherwise} \end{cases}

    so that ``huber_loss(x, y, delta=b) == b * smooth_l1_loss(x, y, beta=b)``.

    Args:
        input: predictions, any shape, floating.
        target: same shape as ``input``, floating.
        reduction: ``"none" | "mean" | "sum"``. ``mean`` divides by the number of elements,
            also when weighted (torch's rule for Huber, unlike :func:`l1_loss`/:func:`mse_loss`,
            which divide a weighted sum by the summed weight).
        delta: the threshold, ``> 0``; ``delta <= 0`` raises ``ValueError``.
        weight: optional per-element weight of ``input``'s shape (not broadcast, as torch).

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): empty ``mean`` is NaN, ``sum`` is 0; the gradient at ``d = 0`` is 0.

    Example:
        >>> losskit.huber_loss(torch.tensor([1.0, 3.0]), torch.zeros(2), delta=2.0, reduction="none")
        tensor([0.5000, 4.0000])

    Mirrors :func:`torch.nn.functional.huber_loss`; Huber, "Robust Estimation of a Location
    Parameter", Ann. Math. Statist. 1964.
    """
    input, target = _check_pair(input, target)
    reduction = check_reduction(reduction)
    delta = check_range("delta", delta, 0.0, low_inclusive=False)
    weight = _check_elementwise_weight(weight, input)
    return _HUBER(input, target, reduction, delta, weight)


def _huber_torch(input, target, reduction, delta, weight):
    x = compute_input(input)
    y = compute_as(target, x.dtype)
    if weight is None:
        return restore(_nn.huber_loss(x, y, REDUCTION_ENUM[reduction], delta), input.dtype)
    # torch's rule for Huber: the weighted mean divides by the number of elements.
    loss = _nn.huber_loss(x, y, 0, delta) * compute_as(weight, x.dtype)
    return restore(reduce(loss, reduction), input.dtype)


_HUBER = Backends("huber_loss", torch=_huber_torch)
huber_loss.backends = _HUBER


# ---------------------------------------------------------------- Poisson NLL


def _check_count_target(target: object) -> torch.Tensor:
    # Counts may come as integers (torch promotes them); bool and complex are mistakes.
    target = check_tensor("target", target)
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must be a floating or integer tensor, got dtype {target.dtype}")
    return target


def _stirling(t: torch.Tensor) -> torch.Tensor:
    """``t log t - t + 0.5 log(2 pi t)`` for ``t > 1``, else 0, with a finite gradient everywhere."""
    above = t > 1.0
    # log() never sees t <= 1 (log 0 = -inf would make the masked branch's gradient NaN).
    safe = torch.where(above, t, torch.full_like(t, 2.0))
    term = safe * torch.log(safe) - safe + 0.5 * torch.log(2.0 * math.pi * safe)
    return torch.where(above, term, torch.zeros_like(t))


def poisson_nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of a Poisson distribution, up to the constant :math:`\log y!`.

    .. math::
        \ell_i = \begin{cases} e^{x_i} - y_i x_i & \text{log\_input} \\
                               x_i - y_i \log(x_i + \varepsilon) & \text{otherwise} \end{cases}
                 \;[+\; y_i \log y_i - y_i + \tfrac12 \log(2\pi y_i) \text{ if full and } y_i > 1]

    The optional Stirling term approximates :math:`\log y!`; it is 0 for :math:`y_i \le 1`.

    Args:
        input: the log-rate (``log_input=True``) or the rate, any shape, floating.
        target: observed counts, same shape as ``input``; floating or integer.
        log_input: whether ``input`` is the log of the Poisson rate.
        full: add the Stirling approximation of :math:`\log y!`.
        eps: added to the rate before the log when ``log_input=False``; ``>= 0``.
        reduction: ``"none" | "mean" | "sum"``.

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): empty ``mean`` is NaN, ``sum`` is 0; a rate below ``-eps`` gives NaN.
    Unlike torch, the gradient with respect to ``target`` is finite where the Stirling term is
    masked (torch gives NaN at ``target = 0`` with ``full=True``), and a negative ``eps`` raises.

    Example:
        >>> losskit.poisson_nll_loss(torch.zeros(3), torch.tensor([0.0, 1.0, 4.0]), full=True)
        tensor(2.0524)

    Mirrors :func:`torch.nn.functional.poisson_nll_loss` (without ``size_average``/``reduce``).
    """
    input = check_floating("input", input)
    target = _check_count_target(target)
    check_same_shape("input", input, "target", target)
    log_input = check_bool("log_input", log_input)
    full = check_bool("full", full)
    eps = check_range("eps", eps, 0.0)
    reduction = check_reduction(reduction)
    return _POISSON_NLL(input, target, log_input, full, eps, reduction)


def _poisson_nll_torch(input, target, log_input, full, eps, reduction):
    x = compute_input(input)
    t = target.to(x.dtype)
    out = torch.poisson_nll_loss(x, t, log_input, full, eps, REDUCTION_ENUM[reduction])
    return restore(out, input.dtype)


def _poisson_nll_formula(input, target, log_input, full, eps, reduction):
    x = upcast(input)
    t = target.to(x.dtype)
    loss = torch.exp(x) - t * x if log_input else x - t * torch.log(x + eps)
    if full:
        loss = loss + _stirling(t)
    return reduce(loss, reduction).to(input.dtype)


def _poisson_torch_refuses(input, target, log_input, full, eps, reduction):
    # torch's Stirling term has a NaN target gradient at target = 0 and overflows for large
    # counts; losskit's formula masks it (a deliberate difference, see the docstring).
    return "full=True: torch's Stirling term gives NaN target gradients" if full else None


_POISSON_NLL = Backends(
    "poisson_nll_loss",
    torch=_poisson_nll_torch,
    formula=_poisson_nll_formula,
    refuses={"torch": _poisson_torch_refuses},
)
poisson_nll_loss.backends = _POISSON_NLL


# ---------------------------------------------------------------- Gaussian NLL


def _gaussian_var(var: object, input: torch.Tensor) -> torch.Tensor | float:
    """``var`` as a float, or a tensor that broadcasts to ``input`` (torch's accepted shapes).

    A tensor is checked ``>= 0`` here only where torch's own function (the torch backend, which
    checks it) will not run.
    """
    if not isinstance(var, torch.Tensor):
        v = check_number("var", var)
        if v < 0:
            raise ValueError(f"var has negative entry/entries: got var={var!r}")
        return v
    var = check_floating("var", var)
    check_same_device("var", var, input)
    view = _homoscedastic_view(var, input)
    # On the torch backend (eager, checks "all") torch's own function makes this check.
    if var.numel() and state.backend == "formula" and value_checks_enabled() and any_true(var < 0):
        first = float(var[var < 0].flatten()[0])
        raise ValueError(f"var has negative entry/entries: found {first!r}")
    return view


def _homoscedastic_view(var: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if var.shape == input.shape:  # heteroscedastic: one variance per prediction
        return var
    if var.shape == input.shape[:-1]:  # one variance per row of the last dimension
        return var.unsqueeze(-1)
    if var.dim() == input.dim():
        differ = [v for i, v in zip(input.shape, var.shape, strict=True) if i != v]
        if len(differ) == 1 and differ[0] == 1:  # one dimension of size 1, broadcast
            return var
    raise ValueError(
        f"var is of incorrect size: got shape {tuple(var.shape)} for input of shape "
        f"{tuple(input.shape)}; expected the input's shape, the input's shape without its last "
        "dimension, or the input's shape with one dimension of size 1"
    )


def gaussian_nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    var: torch.Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of a Gaussian with predicted mean and variance.

    .. math::
        \ell_i = \tfrac12 \left(\log \max(\sigma^2_i, \varepsilon)
                 + \frac{(x_i - y_i)^2}{\max(\sigma^2_i, \varepsilon)}\right)
                 \;[+\; \tfrac12 \log 2\pi \text{ if full}]

    The clamp at ``eps`` changes the value only: the gradient with respect to ``var`` is taken
    as if unclamped (the formula's derivative at the clamped value), as torch does (it clamps
    a copy under ``no_grad``), so a variance head below ``eps`` still learns.

    Args:
        input: the predicted means, shape ``(N, *)`` or ``(*)``, floating.
        target: samples, same shape as ``input``.
        var: the variances: a tensor of ``input``'s shape (heteroscedastic), of ``input``'s shape
            without its last dimension, or of ``input``'s shape with one dimension of size 1
            (homoscedastic); or a non-negative number used everywhere.
        full: add the constant :math:`\tfrac12 \log 2\pi`.
        eps: lower clamp of ``var``, ``>= 0`` (a negative ``eps``, accepted by torch, raises).
        reduction: ``"none" | "mean" | "sum"`` over the elements of ``input``.

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Raises ``ValueError`` ("var has negative entry/entries", a value check for tensors) for a
    negative variance and ("var is of incorrect size") for another ``var`` shape. Edge cases as
    torch: empty ``mean`` is NaN, ``sum`` is 0. Unlike torch, an integer ``var`` (``var=1``) is
    accepted like a float.

    Example:
        >>> mu, var = torch.randn(8, 2), torch.rand(8, 1) + 0.1
        >>> loss = losskit.gaussian_nll_loss(mu, torch.randn(8, 2), var, full=True)

    Mirrors :func:`torch.nn.functional.gaussian_nll_loss`; Nix & Weigend, "Estimating the mean
    and variance of the target probability distribution", ICNN 1994.
    """
    input, target = _check_pair(input, target)
    full = check_bool("full", full)
    eps = check_range("eps", eps, 0.0)
    reduction = check_reduction(reduction)
    return _GAUSSIAN_NLL(input, target, _gaussian_var(var, input), full, eps, reduction)


def _gaussian_nll_torch(input, target, var, full, eps, reduction):
    x = compute_input(input)
    if isinstance(var, torch.Tensor):
        var = compute_as(var, x.dtype)
    try:
        out = _F.gaussian_nll_loss(
            x, compute_as(target, x.dtype), var, full=full, eps=eps, reduction=reduction
        )
    except ValueError:  # torch's negativity check: name the value
        first = float(var[var < 0].flatten()[0])
        raise ValueError(f"var has negative entry/entries: found {first!r}") from None
    return restore(out, input.dtype)


def _gaussian_nll_formula(input, target, var, full, eps, reduction):
    x = upcast(input)
    v = x.new_full((), var) if not isinstance(var, torch.Tensor) else upcast(var)
    # Clamped value, straight-through gradient (see the docstring), as torch: the clamp of a copy
    # is not recorded. An infinite variance stays infinite.
    v = v.clone()
    with torch.no_grad():
        v.clamp_(min=eps)
    diff = x - upcast(target)
    loss = 0.5 * (torch.log(v) + diff * diff / v)
    if full:
        loss = loss + _HALF_LOG_2PI
    return reduce(loss, reduction).to(input.dtype)


def _gaussian_torch_refuses(input, target, var, full, eps, reduction):
    # torch's function reads var (torch.any(var < 0)) on every call: a graph break under
    # torch.compile and a host synchronisation that set_checks("shapes") promises not to make.
    if state.checks != "all" or torch.compiler.is_compiling():
        return "torch's gaussian_nll_loss reads var (its negativity check)"
    return None


_GAUSSIAN_NLL = Backends(
    "gaussian_nll_loss",
    torch=_gaussian_nll_torch,
    formula=_gaussian_nll_formula,
    refuses={"torch": _gaussian_torch_refuses},
)
gaussian_nll_loss.backends = _GAUSSIAN_NLL
