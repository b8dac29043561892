"""Divergences between distributions: the Kullback-Leibler divergence, mirroring ``torch``.

The function validates its arguments (see :mod:`losskit._checks`), computes in float32 for
float16/bfloat16 inputs and returns the input's dtype.
"""

from __future__ import annotations

import torch

from ._checks import check_bool, check_floating, check_same_shape
from ._precision import upcast
from ._reduction import REDUCTIONS_WITH_BATCHMEAN, check_reduction, reduce
from .kernels import dispatch as _kernels

__all__ = ["kl_div"]


def kl_div(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    log_target: bool = False,
) -> torch.Tensor:
    r"""Kullback-Leibler divergence of ``target`` from the distribution whose log is ``input``.

    Element-wise, with ``input`` :math:`x = \log q` and ``target`` :math:`p`:

    .. math::
        \ell_i = p_i (\log p_i - x_i) \quad (0 \text{ where } p_i = 0), \qquad
        \ell_i = e^{t_i} (t_i - x_i) \text{ with } t = \log p \text{ if log\_target}

    ``sum`` over a distribution's support is :math:`\mathrm{KL}(p \,\|\, q)`.

    Args:
        input: log-probabilities, any shape, floating (usually ``log_softmax`` output).
        target: same shape as ``input``: probabilities, or log-probabilities if ``log_target``.
        reduction: ``"none"``, ``"batchmean"`` (the sum divided by ``input.size(0)``, the KL
            divergence per sample; the plain sum for a 0-D input), ``"sum"`` or ``"mean"``
            (divided by the number of elements, which is *not* the KL divergence; torch warns,
            losskit does not).
        log_target: whether ``target`` is given in log space (more stable for small ``p``).

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): a target of exactly 0 contributes 0 (``xlogy``); a negative target
    gives NaN for its element (and its gradient with respect to the target is NaN, as is the
    target gradient at 0, where :math:`\log p` is unbounded); an empty input gives NaN for
    ``mean`` and ``batchmean``, 0 for ``sum``. Unlike torch, which broadcasts them silently,
    ``input`` and ``target`` of different shapes raise ``ValueError``.

    Example:
        >>> logq = torch.randn(4, 10).log_softmax(1)
        >>> p = torch.randn(4, 10).softmax(1)
        >>> loss = losskit.kl_div(logq, p, reduction="batchmean")

    Mirrors :func:`torch.nn.functional.kl_div` (without ``size_average``/``reduce``), also in
    being differentiable with respect to ``target``.
    """
    input = check_floating("input", input)
    target = check_floating("target", target)
    check_same_shape("input", input, "target", target)
    reduction = check_reduction(reduction, REDUCTIONS_WITH_BATCHMEAN)
    log_target = check_bool("log_target", log_target)
    fast = _kernels.maybe_kl_div(input, target, reduction, log_target)
    if fast is not None:
        return fast
    x, t = upcast(input), upcast(target)
    if log_target:
        loss = torch.exp(t) * (t - x)
    else:
        # xlogy: 0 where t == 0 (no 0 * log 0 = NaN), NaN where t < 0.
        loss = torch.special.xlogy(t, t) - t * x
    if reduction == "batchmean":
        total = loss.sum()
        out = total / input.shape[0] if input.dim() > 0 else total
    else:
        out = reduce(loss, reduction)
    return out.to(input.dtype)
