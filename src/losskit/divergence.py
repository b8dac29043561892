"""Divergences between distributions: the Kullback-Leibler divergence, mirroring ``torch``.

The function validates its arguments (see :mod:`losskit._checks`), then calls its
:class:`~losskit._dispatch.Backends` record: torch's ``torch.kl_div`` (float16/bfloat16 computed
in float32 around it, returned in the input's dtype), or on CUDA the one-pass Triton kernel.
"""

from __future__ import annotations

import torch

from ._checks import check_bool, check_floating, check_same_shape
from ._dispatch import Backends
from ._precision import compute_as, compute_input, restore
from ._reduction import REDUCTION_ENUM, REDUCTIONS_WITH_BATCHMEAN, check_reduction
from .kernels.kl.rules import kl_div_kernel, kl_div_refuses

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
    return _KL_DIV(input, target, reduction, log_target)


def _kl_div_torch(
    input: torch.Tensor, target: torch.Tensor, reduction: str, log_target: bool
) -> torch.Tensor:
    # torch.kl_div, as F.kl_div calls it, without F's warning for reduction="mean".
    x = compute_input(input)
    t = compute_as(target, x.dtype)
    if reduction == "batchmean":
        out = torch.kl_div(x, t, 2, log_target=log_target)
        if input.dim() > 0:
            out = out / input.shape[0]
    else:
        out = torch.kl_div(x, t, REDUCTION_ENUM[reduction], log_target=log_target)
    return restore(out, input.dtype)


_KL_DIV = Backends(
    "kl_div", torch=_kl_div_torch, kernel=kl_div_kernel, refuses={"kernel": kl_div_refuses}
)
kl_div.backends = _KL_DIV
