"""Ranking and margin losses mirroring ``torch.nn.functional``: hinge, soft-margin, cosine, triplet.

Each function validates its arguments (see :mod:`losskit._checks`), then calls its
:class:`~losskit._dispatch.Backends` record: torch's own op (float16/bfloat16 computed in float32
around it, returned in the input's dtype). The ``formula`` backends left are losskit's
compositions where a deliberate difference is kept: ``soft_margin_loss`` (finite where torch
overflows, pinnable) and the empty batch of the two multi-class margins (torch returns
uninitialised memory there; losskit's rule is NaN for ``mean``, 0 for ``sum``).

Gradients at a hinge's kink (where the clamped term is exactly 0) follow torch 2.13: the losses
torch composes from ``clamp_min`` (margin ranking, hinge embedding, cosine embedding, triplet) pass
the gradient there; the ones with a dedicated kernel (multi margin, multilabel margin) test
``z > 0`` and do not. The formulas use ``clamp_min`` for the former and ``relu`` for the latter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._checks import (
    any_true,
    check_bool,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_integer,
    check_ndim,
    check_number,
    check_optional_floating,
    check_same_device,
    check_same_shape,
    check_tensor,
    raise_class_index_error,
    value_check_needed,
)
from ._dispatch import Backends, state
from ._precision import compute_as, compute_input, restore, upcast
from ._reduction import REDUCTION_ENUM, check_reduction, reduce

__all__ = [
    "cosine_embedding_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "pairwise_distance",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# torch's cosine_embedding_loss adds ``constexpr float EPSILON = 1e-12`` to both squared magnitudes
# (aten/native/Loss.cpp): the float32 value of 1e-12, which differs from the double 1e-12.
_COSINE_EPSILON = 9.999999960041972e-13

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_nn = torch._C._nn


# ---------------------------------------------------------------- shared checks


def _check_real_target(name: str, value: object) -> torch.Tensor:
    """A target of label values: floating or integer (torch compares it with 1 and -1)."""
    t = check_tensor(name, value)
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be a floating or integer tensor, got dtype {t.dtype}")
    return t


def check_positive_margin(margin: object) -> float:
    """``margin > 0`` (torch's triplet losses); raises with torch's wording."""
    m = check_number("margin", margin)
    if m <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin!r}")
    return m


def check_multi_margin_p(p: object) -> int:
    """``p`` of :func:`multi_margin_loss`: 1 or 2, as torch."""
    if type(p) is int and (p == 1 or p == 2):
        return p
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"p must be an int (1 or 2), got {type(p).__name__}")
    if p not in (1, 2):
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
    return int(p)


def _check_class_scores(input: object) -> torch.Tensor:
    """Class scores of shape ``(C,)`` or ``(N, C)`` with at least one class."""
    x = check_floating("input", input)
    shape = x.shape
    if len(shape) not in (1, 2):
        check_ndim("input", x, (1, 2))
    if shape[-1] == 0:
        raise ValueError(f"input must have at least one class (C > 0), got shape {tuple(x.shape)}")
    return x


# ---------------------------------------------------------------- pairwise losses


def margin_ranking_loss(
    input1: torch.Tensor,
    input2: torch.Tensor,
    target: torch.Tensor,
    margin: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Hinge loss on the ranking of two scores.

    .. math:: \ell_i = \max(0,\; -y_i\,(x_{1,i} - x_{2,i}) + \text{margin})

    ``y = 1`` asks for ``x1`` to rank above ``x2`` by at least ``margin``, ``y = -1`` the reverse.

    Args:
        input1: scores, shape ``(N,)`` or ``()`` (any shape is accepted); floating.
        input2: scores of the same shape.
        target: labels of the same shape, usually ``±1`` (floating or integer).
        margin: the required gap (any real number). Default ``0``.
        reduction: ``"none"`` (the inputs' shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or the inputs' shape for ``reduction="none"``; the dtype of ``input1``.

    Edge cases (as torch): an empty batch gives NaN for ``mean`` and 0 for ``sum``; at the kink (the
    hinge argument exactly 0) the gradient is passed (torch's ``clamp_min``). Shapes must match
    exactly (no broadcasting).

    Example:
        >>> x1, x2 = torch.randn(8, requires_grad=True), torch.randn(8)
        >>> losskit.margin_ranking_loss(x1, x2, torch.randn(8).sign(), margin=0.5).backward()

    Mirrors :func:`torch.nn.functional.margin_ranking_loss`.
    """
    input1 = check_floating("input1", input1)
    input2 = check_floating("input2", input2)
    target = _check_real_target("target", target)
    check_same_shape("input1", input1, "input2", input2)
    check_same_shape("input1", input1, "target", target)
    margin = check_number("margin", margin)
    reduction = check_reduction(reduction)
    return _MARGIN_RANKING(input1, input2, target, margin, reduction)


def _margin_ranking_torch(input1, input2, target, margin, reduction):
    x1 = compute_input(input1)
    out = torch.margin_ranking_loss(
        x1,
        compute_as(input2, x1.dtype),
        target.to(x1.dtype),
        margin,
        REDUCTION_ENUM[reduction],
    )
    return restore(out, input1.dtype)


_MARGIN_RANKING = Backends("margin_ranking_loss", torch=_margin_ranking_torch)
margin_ranking_loss.backends = _MARGIN_RANKING


def hinge_embedding_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    margin: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Hinge loss on a distance ``x`` between pairs labelled similar (1) or dissimilar (-1).

    .. math::
        \ell = [y \ne 1]\,\max(0, \text{margin} - x) + [y \ne -1]\,x

    i.e. ``x`` for ``y = 1`` and ``max(0, margin - x)`` for ``y = -1``. As in torch, a label that is
    neither 1 nor -1 gets *both* terms.

    Args:
        input: distances (or scores), any shape; floating.
        target: labels of the same shape, usually ``±1`` (floating or integer).
        margin: margin for dissimilar pairs. Default ``1``.
        reduction: ``"none"`` (the input's shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or the input's shape for ``reduction="none"``.

    Edge cases (as torch): an empty input gives NaN for ``mean`` and 0 for ``sum``; at the kink
    ``x = margin`` the gradient of the hinge term is passed (torch's ``clamp_min``). Shapes must match
    exactly (torch broadcasts; we raise).

    Example:
        >>> d = torch.rand(6, requires_grad=True) * 2
        >>> losskit.hinge_embedding_loss(d, torch.tensor([1, -1, 1, -1, -1, 1.0])).backward()

    Mirrors :func:`torch.nn.functional.hinge_embedding_loss`.
    """
    input = check_floating("input", input)
    target = _check_real_target("target", target)
    check_same_shape("input", input, "target", target)
    margin = check_number("margin", margin)
    reduction = check_reduction(reduction)
    return _HINGE_EMBEDDING(input, target, margin, reduction)


def _hinge_embedding_torch(input, target, margin, reduction):
    x = compute_input(input)
    out = torch.hinge_embedding_loss(x, target.to(x.dtype), margin, REDUCTION_ENUM[reduction])
    return restore(out, input.dtype)


_HINGE_EMBEDDING = Backends("hinge_embedding_loss", torch=_hinge_embedding_torch)
hinge_embedding_loss.backends = _HINGE_EMBEDDING


def soft_margin_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Two-class logistic loss on ``±1`` labels.

    .. math:: \ell = \log(1 + e^{-y x}) = \operatorname{softplus}(-y x)

    Args:
        input: scores, any shape; floating.
        target: labels of the same shape, usually ``±1`` (floating or integer).
        reduction: ``"none"`` (the input's shape), ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
        Scalar, or the input's shape for ``reduction="none"``.

    Computed stably as ``softplus(-y x)``: finite with a finite gradient for scores of any
    magnitude, where torch's ``log(1 + exp(-y x))`` overflows to ``inf`` (and a NaN gradient) once
    ``-y x`` exceeds about 88 in float32 (11 in float16). An empty input gives NaN for ``mean`` and 0
    for ``sum``.

    Example:
        >>> x = torch.randn(4, 5, requires_grad=True)
        >>> losskit.soft_margin_loss(x, torch.randn(4, 5).sign()).backward()

    Mirrors :func:`torch.nn.functional.soft_margin_loss`.
    """
    input = check_floating("input", input)
    target = _check_real_target("target", target)
    check_same_shape("input", input, "target", target)
    reduction = check_reduction(reduction)
    return _SOFT_MARGIN(input, target, reduction)


def _soft_margin_torch(input, target, reduction):
    x = compute_input(input)
    out = _nn.soft_margin_loss(x, target.to(x.dtype), REDUCTION_ENUM[reduction])
    return restore(out, input.dtype)


# softplus returns its input above ``threshold``; from 37 on that is the loss to the last bit
# in float64 too (log(1 + e^-u) < 2^-53 u for u > 37), and below it exp cannot overflow.
_SOFTPLUS_EXACT = 37.0


def _soft_margin_formula(input, target, reduction):
    x = upcast(input)
    # (-y) x: the negation falls on the target, which needs no gradient.
    loss = F.softplus(target.to(x.dtype).neg() * x, threshold=_SOFTPLUS_EXACT)
    return reduce(loss, reduction).to(input.dtype)


# The formula is the default: torch's op overflows where -y x > 88 (float32), and on the CPU it
# is no faster (benchmarks/parity_quick.py). use_backend("torch") pins torch's op.
_SOFT_MARGIN = Backends(
    "soft_margin_loss",
    torch=_soft_margin_torch,
    formula=_soft_margin_formula,
    prefer="formula",
)
soft_margin_loss.backends = _SOFT_MARGIN


def cosine_embedding_loss(
    input1: torch.Tensor,
    input2: torch.Tensor,
    target: torch.Tensor,
    margin: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Pull pairs of embeddings together (``y = 1``) or push their cosine below a margin (``y = -1``).

    With :math:`\cos = \frac{x_1 \cdot x_2}{\sqrt{(\lVert x_1\rVert^2 + \epsilon)
    (\lVert x_2\rVert^2 + \epsilon)}}` and :math:`\epsilon` = float32(1e-12) (as torch):

    .. math::
        \ell = \begin{cases} 1 - \cos & y = 1 \\ \max(0, \cos - \text{margin}) & y = -1 \\
               0 & \text{otherwise} \end{cases}

    Args:
        input1: embeddings, shape ``(N, D)`` or ``(D,)``; floating.
        input2: embeddings of the same shape.
        target: labels ``±1``, shape ``(N,)`` (or ``()`` for ``(D,)`` inputs); floating or integer.
        margin: margin for dissimilar pairs, meaningful in ``[-1, 1]`` (not enforced, as torch).
        reduction: ``"none"`` (shape ``(N,)`` or ``()``), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or the target's shape for ``reduction="none"``.

    Edge cases (as torch): a zero vector has ``cos = 0`` (the epsilon keeps it finite, its gradient
    is large but finite); an empty batch gives NaN for ``mean`` and 0 for ``sum``.

    Example:
        >>> a, b = torch.randn(4, 16, requires_grad=True), torch.randn(4, 16)
        >>> losskit.cosine_embedding_loss(a, b, torch.tensor([1, -1, 1, -1])).backward()

    Mirrors :func:`torch.nn.functional.cosine_embedding_loss`.
    """
    input1 = check_floating("input1", input1)
    input2 = check_floating("input2", input2)
    target = _check_real_target("target", target)
    check_ndim("input1", input1, (1, 2))
    check_same_shape("input1", input1, "input2", input2)
    check_same_device("target", target, input1, "input1")
    if tuple(target.shape) != tuple(input1.shape[:-1]):
        raise ValueError(
            f"Expected target size {tuple(input1.shape[:-1])} for inputs of shape "
            f"{tuple(input1.shape)}, got {tuple(target.shape)}"
        )
    margin = check_number("margin", margin)
    reduction = check_reduction(reduction)
    return _COSINE_EMBEDDING(input1, input2, target, margin, reduction)


def _cosine_embedding_torch(input1, input2, target, margin, reduction):
    x1 = compute_input(input1)
    out = torch.cosine_embedding_loss(
        x1, compute_as(input2, x1.dtype), target, margin, REDUCTION_ENUM[reduction]
    )
    return restore(out, input1.dtype)


_COSINE_EMBEDDING = Backends("cosine_embedding_loss", torch=_cosine_embedding_torch)
cosine_embedding_loss.backends = _COSINE_EMBEDDING


# ---------------------------------------------------------------- multi-class margins


def multi_margin_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-class hinge loss (Weston–Watkins / Crammer–Singer style), averaged over classes.

    .. math::
        \ell_n = \frac{1}{C} \sum_{i \ne y_n} w_{y_n} \max(0,\; \text{margin} - x_{n,y_n} + x_{n,i})^p

    Args:
        input: class scores, shape ``(N, C)`` or ``(C,)``; floating.
        target: class indices in ``[0, C)``, shape ``(N,)`` (or ``()`` for ``(C,)`` input).
        p: 1 or 2 (``ValueError`` otherwise). Default ``1``.
        margin: the required gap between the target score and the others. Default ``1``.
        weight: optional per-class weight, shape ``(C,)``, applied by the *target* class.
        reduction: ``"none"`` (the target's shape), ``"mean"`` or ``"sum"`` over samples.

    Returns:
        Scalar, or the target's shape for ``reduction="none"``.

    Edge cases: a class index out of range raises ``IndexError`` on every device. An empty batch
    gives NaN for ``mean`` and 0 for ``sum`` (torch returns uninitialised memory there). At the kink
    the gradient is 0, as torch's kernel.

    Example:
        >>> x = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> losskit.multi_margin_loss(x, torch.tensor([3]))  # (0.3 + 0.4 + 0.6) / 4
        tensor(0.3250)

    Mirrors :func:`torch.nn.functional.multi_margin_loss`.
    """
    input = _check_class_scores(input)
    target = check_integer("target", target)
    check_same_device("target", target, input)
    if input.dim() == 1 and tuple(target.shape) == (1,):  # torch reads this as a batch of one
        input = input.unsqueeze(0)
    # The common (N, C) / (N,) case first, without building shapes.
    shape, t_shape = input.shape, target.shape
    if not (len(shape) == 2 and len(t_shape) == 1 and t_shape[0] == shape[0]):
        expected = tuple(input.shape[:-1])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"Expected target size {expected} for input of shape {tuple(input.shape)} "
                f"(class indices), got {tuple(target.shape)}"
            )
    p = check_multi_margin_p(p)
    margin = check_number("margin", margin)
    weight = check_optional_floating("weight", weight)
    reduction = check_reduction(reduction)
    num_classes = shape[-1]
    check_class_weight(weight, num_classes, input)
    check_class_indices(target, num_classes, native_rejects=True)
    return _MULTI_MARGIN(input, target, p, margin, weight, reduction)


def _long(target: torch.Tensor) -> torch.Tensor:
    """Class indices as int64 (torch's ops take no other width; losskit takes any integer)."""
    return target if target.dtype == torch.int64 else target.long()


def _multi_margin_torch(input, target, p, margin, weight, reduction):
    x = compute_input(input)
    try:
        out = _nn.multi_margin_loss(
            x, _long(target), p, margin, compute_as(weight, x.dtype), REDUCTION_ENUM[reduction]
        )
    except RuntimeError:  # torch's "target out of range": name the index
        raise_class_index_error(target, input.shape[-1])
        raise
    return restore(out, input.dtype)


def _multi_margin_formula(input, target, p, margin, weight, reduction):
    num_classes = input.shape[-1]
    x = upcast(input)
    idx = target.long().unsqueeze(-1)
    x_target = x.gather(-1, idx)
    # relu: a zero gradient at the kink, as torch's kernel. The target's own term (i = y) is
    # dropped with where(), which also stops its gradient.
    hinge = F.relu(margin - x_target + x)
    if p == 2:
        hinge = hinge * hinge
    is_target = torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)
    hinge = torch.where(is_target, hinge.new_zeros(()), hinge)
    if weight is not None:
        hinge = hinge * upcast(weight)[target.long()].unsqueeze(-1)
    loss = hinge.sum(-1) / num_classes
    return reduce(loss, reduction).to(input.dtype)


def _empty_batch(input: torch.Tensor, *args: object) -> str | None:
    # torch's multi-class margin kernels return uninitialised memory for an empty batch.
    return "an empty batch (torch returns uninitialised memory)" if input.numel() == 0 else None


_MULTI_MARGIN = Backends(
    "multi_margin_loss",
    torch=_multi_margin_torch,
    formula=_multi_margin_formula,
    refuses={"torch": _empty_batch},
)
multi_margin_loss.backends = _MULTI_MARGIN


def _check_multilabel_indices(target: torch.Tensor, num_classes: int, force: bool = False) -> None:
    # torch checks every entry, those after the first -1 included; so do we. On the CPU torch's
    # op makes the check (force: reword its error).
    if not (force or value_check_needed(target, native_rejects=True)):
        return
    bad = (target < -1) | (target >= num_classes)
    if any_true(bad):
        first = int(target[bad].flatten()[0])
        raise IndexError(
            f"Target {first} is out of bounds: multilabel targets must be class indices in "
            f"[0, {num_classes}) or -1 (padding)"
        )


def multilabel_margin_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-label hinge loss: every target class must outscore every non-target class by 1.

    With :math:`T_n` the class indices of ``target[n]`` before its first ``-1``:

    .. math::
        \ell_n = \frac{1}{C} \sum_{j \in T_n} \sum_{i \notin T_n} \max(0,\; 1 - (x_{n,j} - x_{n,i}))

    Args:
        input: class scores, shape ``(N, C)`` or ``(C,)``; floating.
        target: integer tensor of ``input``'s shape holding class indices padded with ``-1``; only
            the entries before the first ``-1`` count (a repeated index counts twice, as torch).
        reduction: ``"none"`` (shape ``(N,)``, or ``()`` for ``(C,)`` input), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``(N,)`` / ``()`` for ``reduction="none"``.

    Edge cases: an entry outside ``[-1, C)`` (anywhere in the row, as torch) raises ``IndexError``.
    An empty batch gives NaN for ``mean`` and 0 for ``sum`` (torch returns uninitialised memory).
    At the kink the gradient is 0, as torch's kernel. Cost ``O(N C log C)`` time and ``O(N C)``
    memory (sorted non-target scores with suffix sums), not ``O(N C^2)``.

    Example:
        >>> x = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> losskit.multilabel_margin_loss(x, torch.tensor([[3, 0, -1, 1]]))
        tensor(0.8500)

    Mirrors :func:`torch.nn.functional.multilabel_margin_loss`.
    """
    input = _check_class_scores(input)
    target = check_integer("target", target)
    check_same_device("target", target, input)
    if target.shape != input.shape:
        raise ValueError(
            f"Expected target size {tuple(input.shape)} (class indices padded with -1, the "
            f"input's shape), got {tuple(target.shape)}"
        )
    reduction = check_reduction(reduction)
    _check_multilabel_indices(target, input.shape[-1])
    return _MULTILABEL_MARGIN(input, target, reduction)


def _multilabel_margin_torch(input, target, reduction):
    x = compute_input(input)
    try:
        out = _nn.multilabel_margin_loss(x, _long(target), REDUCTION_ENUM[reduction])
    except RuntimeError:  # torch's "'target' is out of range": name the index
        _check_multilabel_indices(target, input.shape[-1], force=True)
        raise
    return restore(out, input.dtype)


def _multilabel_margin_formula(input, target, reduction):
    unbatched = input.dim() == 1
    x = upcast(input)
    t = target.long()
    if unbatched:
        x, t = x.unsqueeze(0), t.unsqueeze(0)
    loss = _multilabel_margin_rows(x, t)
    if unbatched:
        loss = loss.squeeze(0)
    return reduce(loss, reduction).to(input.dtype)


# torch's CPU kernel compares every target with every class, O(N C^2); the formula sorts,
# O(N C log C). Measured crossover on 2 CPU threads: a few hundred classes.
_MULTILABEL_TORCH_MAX_CPU_CLASSES = 512


def _multilabel_margin_torch_refuses(input, target, reduction):
    if torch.compiler.is_compiling():
        # torch 2.13's traced decomposition of this op gives wrong values (aot_eager).
        return "torch.compile: torch's decomposition of multilabel_margin_loss is wrong"
    if (
        state.backend == "auto"
        and input.is_cpu
        and input.shape[-1] > _MULTILABEL_TORCH_MAX_CPU_CLASSES
    ):
        return "more than 512 classes on the CPU: the formula's O(N C log C) is faster"
    return _empty_batch(input)


_MULTILABEL_MARGIN = Backends(
    "multilabel_margin_loss",
    torch=_multilabel_margin_torch,
    formula=_multilabel_margin_formula,
    refuses={"torch": _multilabel_margin_torch_refuses},
)
multilabel_margin_loss.backends = _MULTILABEL_MARGIN


def _multilabel_margin_rows(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-row loss of (N, C) scores and (N, C) padded targets, without an (N, C, C) tensor.

    For a target score ``a`` the inner sum is ``sum_{i not in T, x_i > a - 1} (1 - a + x_i)``: sort the
    non-target scores, count those above ``a - 1`` and add their suffix sum.
    """
    n, c = x.shape
    raw = x.detach()
    # Entries before the first negative one are targets ("break" in torch's loop).
    valid = torch.cumsum((t < 0).long(), dim=1) == 0
    safe_t = torch.where(valid, t, torch.zeros_like(t))
    is_target = torch.zeros_like(raw).scatter_add_(1, safe_t, valid.to(raw.dtype)) > 0

    # Which pairs count is decided on the scores as given, like torch's z = 1 - x_j + x_i > 0:
    # rounding keeps the sign of a sum, so that is exactly x_i > -(1 - x_j). The pair at the
    # kink (z = 0) is then out, with gradient 0, as in torch.
    others = torch.where(is_target, torch.full_like(raw, -torch.inf), raw)
    sorted_others, order = torch.sort(others, dim=1)  # target classes (-inf) first
    threshold = -(1.0 - raw.gather(1, safe_t))
    k = torch.searchsorted(sorted_others, threshold.contiguous(), right=True)

    # The sums, in float64 and on scores centred per row (a constant, no gradient): the suffix
    # sums of sorted scores cancel against count * (1 - x_j), which loses digits in float32 when
    # scores are large.
    x64 = x.double()
    x64 = x64 - raw.double().nan_to_num(0.0, 0.0, 0.0).mean(1, keepdim=True)
    others64 = torch.where(is_target, torch.zeros_like(x64), x64).gather(1, order)
    suffix = torch.flip(torch.cumsum(torch.flip(others64, [1]), dim=1), [1])
    suffix = torch.cat([suffix, x64.new_zeros(n, 1)], dim=1)  # suffix[c] = 0
    shift = 1.0 - x64.gather(1, safe_t)  # 1 - x_j for each target slot j
    count = (c - k).to(x64.dtype)
    per_slot = count * shift + suffix.gather(1, k)
    per_slot = torch.where(valid, per_slot, torch.zeros_like(per_slot))
    return (per_slot.sum(1) / c).to(x.dtype)


# ---------------------------------------------------------------- triplet losses


def _pairwise_distance(
    x1: torch.Tensor, x2: torch.Tensor, p: float, eps: float, keepdim: bool = False
) -> torch.Tensor:
    # torch adds eps to the difference (not to the norm), so equal vectors are eps*D^(1/p) apart
    # and the 2-norm never sees an exact zero vector.
    return torch.linalg.vector_norm(x1 - x2 + eps, ord=p, dim=-1, keepdim=keepdim)


def pairwise_distance(
    x1: torch.Tensor,
    x2: torch.Tensor,
    p: float = 2.0,
    eps: float = 1e-6,
    keepdim: bool = False,
) -> torch.Tensor:
    r"""The ``p``-norm distance between matching rows: :math:`\lVert x_1 - x_2 + \epsilon\rVert_p`.

    The norm is taken over the last dimension; ``x1`` and ``x2`` broadcast against each other
    (as torch). Note that ``eps`` is added to each component of the difference, not to the norm.

    Args:
        x1: shape ``(N, D)`` or ``(D,)`` (any ``(*, D)``); floating.
        x2: broadcastable to ``x1``.
        p: the norm degree; any real number, ``inf`` included (as :func:`torch.linalg.vector_norm`).
        eps: added to the difference for numerical stability. Default ``1e-6``.
        keepdim: keep the reduced last dimension (size 1).

    Returns:
        Shape ``(N,)`` (or ``(N, 1)`` with ``keepdim``); the promoted floating dtype of the inputs.

    Example:
        >>> losskit.pairwise_distance(torch.zeros(2, 3), torch.ones(2, 3), p=1.0)
        tensor([3.0000, 3.0000])

    Mirrors :func:`torch.nn.functional.pairwise_distance`.
    """
    x1 = check_floating("x1", x1)
    x2 = check_floating("x2", x2)
    try:
        torch.broadcast_shapes(x1.shape, x2.shape)
    except RuntimeError:
        raise ValueError(
            f"x1 of shape {tuple(x1.shape)} and x2 of shape {tuple(x2.shape)} do not broadcast"
        ) from None
    p = check_number("p", p)
    eps = check_number("eps", eps)
    keepdim = check_bool("keepdim", keepdim)
    dtype = torch.promote_types(x1.dtype, x2.dtype)
    out = _pairwise_distance(upcast(x1), upcast(x2), p, eps, keepdim)
    return out.to(dtype)


def _check_triplet(
    anchor: object, positive: object, negative: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = check_floating("anchor", anchor)
    pos = check_floating("positive", positive)
    neg = check_floating("negative", negative)
    # torch only requires the same number of dimensions, then broadcasts; we want equal shapes.
    check_same_shape("anchor", a, "positive", pos)
    check_same_shape("anchor", a, "negative", neg)
    return a, pos, neg


def triplet_margin_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet loss: the anchor must be nearer its positive than its negative by ``margin``.

    .. math::
        \ell_i = \max(d(a_i, p_i) - d(a_i, n_i) + \text{margin},\; 0), \qquad
        d(u, v) = \lVert u - v + \epsilon \rVert_p

    (:func:`pairwise_distance`). With ``swap=True`` (Balntas et al., 2016), :math:`d(a_i, n_i)` is
    replaced by :math:`\min(d(a_i, n_i), d(p_i, n_i))`.

    Args:
        anchor: embeddings, shape ``(N, D)`` or ``(D,)``; floating.
        positive: same shape as ``anchor``.
        negative: same shape as ``anchor``.
        margin: must be ``> 0`` (``ValueError`` otherwise, as torch). Default ``1``.
        p: the norm degree of the distance. Default ``2``.
        eps: added to the differences (see :func:`pairwise_distance`). Default ``1e-6``.
        swap: use the distance swap. Default ``False``.
        reduction: ``"none"`` (shape ``(N,)`` or ``()``), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``(N,)`` for ``reduction="none"``.

    Edge cases (as torch): an empty batch gives NaN for ``mean`` and 0 for ``sum``; the hinge passes
    the gradient at its kink (``clamp_min``); with ``swap`` a tie splits the gradient in half.
    The three inputs must have the same shape (torch broadcasts them). Extra leading batch
    dimensions ``(*, D)`` work as in torch.

    Example:
        >>> a, pos, neg = (torch.randn(16, 8, requires_grad=True) for _ in range(3))
        >>> losskit.triplet_margin_loss(a, pos, neg, margin=0.2, swap=True).backward()

    Mirrors :func:`torch.nn.functional.triplet_margin_loss`; Balntas et al., "Learning shallow
    convolutional feature descriptors with triplet losses", BMVC 2016.
    """
    anchor, positive, negative = _check_triplet(anchor, positive, negative)
    if anchor.dim() == 0:
        raise ValueError("anchor, positive and negative must be (D,) or (N, D), got 0-D tensors")
    margin = check_positive_margin(margin)
    p = check_number("p", p)
    eps = check_number("eps", eps)
    swap = check_bool("swap", swap)
    reduction = check_reduction(reduction)
    return _TRIPLET_MARGIN(anchor, positive, negative, margin, p, eps, swap, reduction)


def _triplet_margin_torch(anchor, positive, negative, margin, p, eps, swap, reduction):
    a = compute_input(anchor)
    out = torch.triplet_margin_loss(
        a,
        compute_as(positive, a.dtype),
        compute_as(negative, a.dtype),
        margin,
        p,
        eps,
        swap,
        REDUCTION_ENUM[reduction],
    )
    return restore(out, anchor.dtype)


_TRIPLET_MARGIN = Backends("triplet_margin_loss", torch=_triplet_margin_torch)
triplet_margin_loss.backends = _TRIPLET_MARGIN


def triplet_margin_with_distance_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    distance_function: DistanceFn | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet loss with any distance: :math:`\max(d(a, p) - d(a, n) + \text{margin}, 0)`.

    With ``swap=True``, :math:`d(a, n)` is replaced by :math:`\min(d(a, n), d(p, n))`.

    Args:
        anchor: inputs of shape ``(N, *)`` that ``distance_function`` accepts; floating.
        positive: same shape as ``anchor``.
        negative: same shape as ``anchor``.
        distance_function: a callable ``(x1, x2) -> (N,)`` non-negative distances, e.g.
            ``lambda x, y: 1 - torch.nn.functional.cosine_similarity(x, y)``. Default:
            :func:`pairwise_distance` (Euclidean, ``eps=1e-6``). It is called on float32 copies of
            float16/bfloat16 inputs.
        margin: must be ``> 0`` (``ValueError`` otherwise, as torch). Default ``1``.
        swap: use the distance swap. Default ``False``.
        reduction: ``"none"`` (the distances' shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or the distances' shape for ``reduction="none"``.

    Edge cases (as torch): an empty batch gives NaN for ``mean`` and 0 for ``sum``. The three inputs
    must have the same shape (torch only checks their number of dimensions).

    Example:
        >>> a, pos, neg = (torch.randn(16, 8, requires_grad=True) for _ in range(3))
        >>> cos_dist = lambda x, y: 1.0 - torch.nn.functional.cosine_similarity(x, y)
        >>> losskit.triplet_margin_with_distance_loss(
        ...     a, pos, neg, distance_function=cos_dist, margin=0.3).backward()

    Mirrors :func:`torch.nn.functional.triplet_margin_with_distance_loss`.
    """
    anchor, positive, negative = _check_triplet(anchor, positive, negative)
    if distance_function is not None and not callable(distance_function):
        raise TypeError(
            f"distance_function must be callable or None, got {type(distance_function).__name__}"
        )
    margin = check_positive_margin(margin)
    swap = check_bool("swap", swap)
    reduction = check_reduction(reduction)
    return _TRIPLET_WITH_DISTANCE(
        anchor, positive, negative, distance_function, margin, swap, reduction
    )


def _triplet_with_distance_torch(
    anchor, positive, negative, distance_function, margin, swap, reduction
):
    # torch's own is a composition in Python around the distance (called directly).
    a = compute_input(anchor)
    out = F.triplet_margin_with_distance_loss(
        a,
        compute_as(positive, a.dtype),
        compute_as(negative, a.dtype),
        distance_function=distance_function,
        margin=margin,
        swap=swap,
        reduction=reduction,
    )
    return restore(out, anchor.dtype)


_TRIPLET_WITH_DISTANCE = Backends(
    "triplet_margin_with_distance_loss", torch=_triplet_with_distance_torch
)
triplet_margin_with_distance_loss.backends = _TRIPLET_WITH_DISTANCE
