"""Pairwise distance matrices for metric learning, with finite gradients at zero distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_number, check_tensor
from .._precision import upcast
from ._common import check_embeddings, check_metric, safe_sqrt

__all__ = ["pairwise_distance_matrix"]


def pairwise_distance_matrix(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    metric: str = "euclidean",
    p: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    r"""Distances between every row of ``x`` and every row of ``y`` (``x`` itself if ``y=None``).

    - ``"euclidean"``: :math:`\sqrt{\lVert a\rVert^2 + \lVert b\rVert^2 - 2 a\cdot b}` (the Gram
      form: one matrix product). The squared distance is clamped at 0; where it is ``<= eps`` the
      distance is exactly 0 with zero gradient (sqrt has an infinite slope at 0), elsewhere the
      gradient is at most :math:`1/(2\sqrt{\varepsilon})`.
    - ``"squared_euclidean"``: the same without the square root.
    - ``"cosine"``: :math:`1 - \hat a\cdot\hat b` with :math:`\hat a = a/\max(\lVert a\rVert,
      \varepsilon)`, clamped to ``[0, 2]``; a zero row is at distance 1 from everything.
    - ``"lp"``: :math:`(\sum_k |a_k - b_k|^p)^{1/p}`, exact (from the differences, no Gram form),
      via :func:`torch.cdist`; ``p`` in ``[1, inf]``.

    With ``y=None`` the diagonal is exactly 0 with zero gradient for every metric (the Gram form
    would otherwise leave rounding noise of order :math:`10^{-7}\lVert a\rVert^2` there).

    Args:
        x: ``(N, D)`` floating.
        y: ``(M, D)`` floating, same dtype and device as ``x``; ``None`` for ``x`` against itself.
        metric: ``"euclidean" | "squared_euclidean" | "cosine" | "lp"``.
        p: the norm's order for ``metric="lp"`` (ignored otherwise).
        eps: clamp of the squared distance before the square root, and of the norm for cosine.

    Returns:
        ``(N, M)`` distances in ``x``'s dtype (computed in float32 for float16/bfloat16).

    Example:
        >>> d = pairwise_distance_matrix(torch.randn(8, 16, requires_grad=True))
        >>> d.sum().backward()  # finite, and zero on the diagonal

    References: the Gram form and the clamp as in Hermans et al., "In Defense of the Triplet
    Loss for Person Re-Identification" (2017); ``"lp"`` mirrors :func:`torch.cdist`.
    """
    x = check_embeddings(x, "x")
    if y is not None:
        y = check_embeddings(check_tensor("y", y), "y")
        if y.shape[1] != x.shape[1] or y.dtype != x.dtype or y.device != x.device:
            raise ValueError(
                f"y must have x's feature size, dtype and device ({x.shape[1]}, {x.dtype}, "
                f"{x.device}), got ({y.shape[1]}, {y.dtype}, {y.device})"
            )
    metric, p = check_metric(metric, p)
    eps = check_number("eps", eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return distance_matrix(upcast(x), upcast(y), metric, p, eps).to(x.dtype)


def distance_matrix(
    x: torch.Tensor, y: torch.Tensor | None, metric: str, p: float, eps: float = 1e-12
) -> torch.Tensor:
    """:func:`pairwise_distance_matrix` on validated inputs, in their (compute) dtype."""
    same = y is None
    if metric in ("euclidean", "squared_euclidean"):
        d = _squared_euclidean(x, x if same else y)
        if same:
            d.fill_diagonal_(0.0)  # in place on clamp's output: autograd zeroes its gradient
        return safe_sqrt(d, eps) if metric == "euclidean" else d
    if metric == "cosine":
        xn = F.normalize(x, dim=1, eps=eps)
        yn = xn if same else F.normalize(y, dim=1, eps=eps)
        d = (1.0 - xn @ yn.T).clamp(0.0, 2.0)
        return d.fill_diagonal_(0.0) if same else d
    # From the differences: the diagonal of x against itself is exactly 0 already.
    return torch.cdist(x, x if same else y, p=p, compute_mode="donot_use_mm_for_euclid_dist")


def _squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ||a||^2 + ||b||^2 - 2 a.b as one matrix product of augmented rows [a, ||a||^2, 1] and
    # [-2 b, 1, ||b||^2]: no B×B broadcast adds. Cancellation can leave it slightly negative.
    ones_x = x.new_ones(x.shape[0], 1)
    ones_y = y.new_ones(y.shape[0], 1)
    xa = torch.cat([x, (x * x).sum(1, keepdim=True), ones_x], dim=1)
    ya = torch.cat([-2.0 * y, ones_y, (y * y).sum(1, keepdim=True)], dim=1)
    return (xa @ ya.T).clamp_min(0.0)


def paired_distance(a: torch.Tensor, b: torch.Tensor, metric: str, p: float, eps: float = 1e-12):
    """Distance between row ``i`` of ``a`` and row ``i`` of ``b``, from the differences (exact)."""
    diff = a - b
    if metric == "euclidean":
        # The norm of the difference: its gradient is a unit vector (0 at 0), never large.
        return torch.linalg.vector_norm(diff, dim=1)
    if metric == "squared_euclidean":
        return (diff * diff).sum(1)
    if metric == "cosine":
        an = F.normalize(a, dim=1, eps=eps)
        bn = F.normalize(b, dim=1, eps=eps)
        return (1.0 - (an * bn).sum(1)).clamp(0.0, 2.0)
    return torch.linalg.vector_norm(diff, ord=p, dim=1)


def ordering_matrix(x: torch.Tensor, metric: str, p: float) -> torch.Tensor:
    """A ``(B, B)`` matrix ordered like the distances *within each row* (for argmin/argmax only).

    For the Euclidean metrics ``||b||^2 - 2 a.b`` (the row constant ``||a||^2`` and the monotone
    square root dropped); for cosine ``-a.b`` of the normalised rows; ``lp`` the exact distances.
    The diagonal is not meaningful: callers mask it.
    """
    if metric in ("euclidean", "squared_euclidean"):
        return torch.addmm((x * x).sum(1)[None, :], x, x.T, beta=1.0, alpha=-2.0)
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return -(xn @ xn.T)
    return torch.cdist(x, x, p=p, compute_mode="donot_use_mm_for_euclid_dist")
