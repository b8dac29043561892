"""Language-model head losses: cross entropy fused with the vocabulary projection, and z-loss.

:func:`linear_cross_entropy` computes ``cross_entropy(input @ linear_weight.T + linear_bias,
target)`` in chunks of rows, so the full ``N × V`` logits never exist: each chunk's logits are
made, turned into their gradient, multiplied into the gradients of ``input``, ``linear_weight``
and ``linear_bias`` and freed. :func:`cross_entropy_with_z_loss` adds the PaLM z-loss and logit
soft-capping to class-index cross entropy. On CUDA (with ``triton``) both use the fused
cross-entropy kernel of :mod:`losskit.kernels`; elsewhere the same formulas run in PyTorch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._autograd import detach_unless_grad, first_order_only, functorch_active
from ._checks import (
    check_bool,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_int,
    check_number,
    check_optional_floating,
    check_range,
    check_same_device,
    check_tensor,
)
from ._precision import upcast
from ._reduction import check_reduction
from .kernels import dispatch

__all__ = ["cross_entropy_with_z_loss", "linear_cross_entropy"]

# Elements per chunk of logits: ~64 MB of float32 on the PyTorch path; ~512 MB of bfloat16 on the
# kernel path. Each chunk reads and writes the whole linear_weight gradient once (its
# accumulation), so fewer, larger chunks are faster; the chunk's logits are the memory price.
_TORCH_CHUNK_ELEMENTS = 1 << 24
_KERNEL_CHUNK_ELEMENTS = 1 << 28


# ---------------------------------------------------------------- cross entropy with z-loss


def check_softcap(softcap: object) -> float | None:
    """``softcap`` is ``None`` (off) or a finite number ``> 0``."""
    if softcap is None:
        return None
    cap = check_number("softcap", softcap)
    if not (0.0 < cap < math.inf):
        raise ValueError(f"softcap must be None or a finite number > 0, got {softcap!r}")
    return cap


def check_lse_square_scale(scale: object) -> float:
    s = check_number("lse_square_scale", scale)
    if not (0.0 <= s < math.inf):
        raise ValueError(f"lse_square_scale must be a finite number >= 0, got {scale!r}")
    return s


def _check_index_input(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if input.dim() == 0:
        raise ValueError("input must be (C,), (N, C) or (N, C, d1, ..., dK); got a 0-D tensor")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must be an integer tensor of class indices (int64), got dtype {target.dtype}"
        )
    check_same_device("target", target, input)
    expected = () if input.dim() == 1 else (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} for input of shape {tuple(input.shape)} "
            f"(class indices), got {tuple(target.shape)}"
        )
    return input, target


def cross_entropy_with_z_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    inplace_backward: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Class-index cross entropy with the z-loss and logit soft-capping of large language models.

    With soft-capped logits :math:`x' = c \tanh(x / c)` (no capping when ``softcap`` is ``None``)
    and :math:`\mathrm{lse}_i = \log \sum_c e^{x'_{ic}}`:

    .. math::
        \ell_i = \mathrm{CE}(x'_i, y_i) + s\,\mathrm{lse}_i^2

    where CE is :func:`losskit.cross_entropy` (class weights, ``ignore_index``, label smoothing)
    and :math:`s` is ``lse_square_scale`` (the z-loss of PaLM, which keeps the softmax
    normaliser near 1; Chowdhery et al. 2022, 1e-4 there). Soft-capping is Gemma 2's (30 there).

    Args:
        input: logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``; float32/float16/bfloat16
            (float64 too on the PyTorch path). Computed in float32 at least.
        target: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``.
        weight: optional per-class weight ``(C,)`` (weights the CE term only).
        ignore_index: target value whose position contributes nothing (neither term).
        reduction: ``"none"``, ``"sum"`` or ``"mean"``. ``mean`` divides the CE term by
            :math:`\sum_i w_{y_i}` over kept positions (as :func:`losskit.cross_entropy`) and the
            z term by the number of kept positions (the same number without class weights).
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        lse_square_scale: :math:`s \ge 0`.
        softcap: :math:`c > 0` or ``None``.
        return_z_loss: also return the z term alone (same reduction, without gradient), to log it.
        inplace_backward: kernel path only: the gradient may be written into ``input``'s storage
            (saves one logits-sized buffer; ``input``'s values are lost). Ignored elsewhere.

    Returns:
        The loss (CE plus z term), or ``(loss, z_loss)``; dtype of ``input``.

    Edge cases as :func:`losskit.cross_entropy`: an empty batch gives NaN for ``mean`` and 0 for
    ``sum``; all targets ignored gives NaN for ``mean`` (zero gradient). With the value checks off
    (:func:`losskit.set_checks`) an out-of-range index gives NaN on the kernel path, not a crash.

    Example:
        >>> logits = torch.randn(8, 32000, requires_grad=True)
        >>> loss, z = losskit.cross_entropy_with_z_loss(
        ...     logits, torch.randint(32000, (8,)), lse_square_scale=1e-4, return_z_loss=True)

    Same options as flash-attention's and Liger-Kernel's cross entropy; ``lse_square_scale=0`` and
    ``softcap=None`` give exactly :func:`losskit.cross_entropy`.
    """
    input, target = _check_index_input(input, target)
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    weight = check_optional_floating("weight", weight)
    lse_square_scale = check_lse_square_scale(lse_square_scale)
    softcap = check_softcap(softcap)
    return_z_loss = check_bool("return_z_loss", return_z_loss)
    inplace_backward = check_bool("inplace_backward", inplace_backward)
    num_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    check_class_weight(weight, num_classes, input)
    check_class_indices(target, num_classes, ignore_index)

    problem = dispatch.first_problem(
        dispatch.dtype_problem("input", input),
        None if num_classes > 0 else "zero classes",
        dispatch.grad_problem(weight=weight),
    )
    if dispatch.select("cross_entropy_with_z_loss", (input, target, weight), problem):
        from .kernels.cross_entropy.function import triton_cross_entropy

        return triton_cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing,
            lse_square_scale=lse_square_scale, softcap=softcap,
            return_z_loss=return_z_loss, inplace_backward=inplace_backward,
        )  # fmt: skip
    loss, z = _z_loss_torch(
        input, target, weight, ignore_index, reduction, label_smoothing, lse_square_scale, softcap
    )
    return (loss, z) if return_z_loss else loss


def _z_loss_torch(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    lse_square_scale: float,
    softcap: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    x = upcast(input)
    if input.dim() == 1:  # a batch of one
        x, target = x.unsqueeze(0), target.unsqueeze(0)
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    # torch's cross entropy on the (upcast, capped) logits is losskit's convention exactly.
    w = None if weight is None else weight.to(x.dtype)  # any floating weight, as cross_entropy
    ce = F.cross_entropy(
        x, target.long(), w, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=label_smoothing,
    )  # fmt: skip
    keep = target != ignore_index
    if lse_square_scale != 0.0:
        lse = torch.logsumexp(x, dim=1)
        z_pos = torch.where(keep, lse_square_scale * lse * lse, lse.new_zeros(()))
    else:
        z_pos = torch.zeros(target.shape, dtype=x.dtype, device=x.device)
    if reduction == "none":
        z = z_pos
    elif reduction == "sum":
        z = z_pos.sum()
    else:
        z = z_pos.sum() / keep.sum()
    loss = ce + z
    if input.dim() == 1 and reduction == "none":
        loss, z = loss.squeeze(0), z.squeeze(0)
    return loss.to(input.dtype), z.detach().to(input.dtype)


# ---------------------------------------------------------------- linear cross entropy


def _check_linear_args(
    input: object,
    linear_weight: object,
    target: object,
    linear_bias: object,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    input = check_floating("input", input)
    linear_weight = check_floating("linear_weight", linear_weight)
    target = check_tensor("target", target)
    linear_bias = check_optional_floating("linear_bias", linear_bias)
    # A weight on another device would leave the chunked loop's output buffers unwritten.
    for name, t in (
        ("linear_weight", linear_weight),
        ("target", target),
        ("linear_bias", linear_bias),
    ):
        if t is not None:
            check_same_device(name, t, input)
    if input.dim() not in (1, 2):
        raise ValueError(
            f"input must be (in_features,) or (N, in_features), got shape {tuple(input.shape)}"
        )
    if linear_weight.dim() < 2:
        raise ValueError(
            "linear_weight must be (C, in_features) or (C, d1, ..., dK, in_features), "
            f"got shape {tuple(linear_weight.shape)}"
        )
    if linear_weight.shape[-1] != input.shape[-1]:
        raise ValueError(
            f"input has {input.shape[-1]} in_features but linear_weight of shape "
            f"{tuple(linear_weight.shape)} expects {linear_weight.shape[-1]}"
        )
    if linear_weight.dtype != input.dtype:
        raise TypeError(
            f"linear_weight has dtype {linear_weight.dtype} but input has {input.dtype}; "
            "they must match"
        )
    out_shape = tuple(linear_weight.shape[:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != out_shape:
        raise ValueError(f"linear_bias must have shape {out_shape}, got {tuple(linear_bias.shape)}")
    if linear_bias is not None and linear_bias.dtype != input.dtype:
        raise TypeError(
            f"linear_bias has dtype {linear_bias.dtype} but input has {input.dtype}; "
            "they must match"
        )
    if len(out_shape) > 1 and input.dim() == 1:
        raise ValueError(
            f"a K-dimensional linear_weight of shape {tuple(linear_weight.shape)} needs a "
            f"batched input (N, {input.shape[-1]}), got shape {tuple(input.shape)}"
        )
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            "target must hold class indices (int64) or class probabilities (floating), "
            f"got dtype {target.dtype}"
        )
    batch = tuple(input.shape[:-1])
    if target.is_floating_point():
        expected = (*batch, *out_shape)
        kind = "class probabilities"
    else:
        expected = (*batch, *out_shape[1:])
        kind = "class indices"
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} ({kind}) for input of shape "
            f"{tuple(input.shape)} and linear_weight of shape {tuple(linear_weight.shape)}, "
            f"got {tuple(target.shape)}"
        )
    return input, linear_weight, target, linear_bias


def check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    c = check_int("chunk_size", chunk_size)
    if c < 1:
        raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
    return c


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Cross entropy of a linear projection, computed in chunks without the full logits.

    .. math::
        \ell = \mathrm{cross\_entropy}(x W^\top + b,\ y)

    with every option of :func:`losskit.cross_entropy` (class weights, ``ignore_index``, label
    smoothing, class-index or class-probability targets). Rows are processed ``chunk_size`` at a
    time: a chunk's ``(chunk, C)`` logits are made, turned into their gradient in place and
    multiplied into the gradients of ``input``, ``linear_weight`` and ``linear_bias``, so peak
    extra memory is one chunk of logits plus the gradients themselves. For a ``mean``/``sum``
    reduction the gradients are computed in the forward (one pass of three matrix products);
    for ``none`` the backward recomputes the logits chunk by chunk.

    Args:
        input: ``(in_features,)`` or ``(N, in_features)``.
        linear_weight: ``(C, in_features)``, or ``(C, d1, ..., dK, in_features)`` for a
            K-dimensional loss (computed unchunked, as torch does).
        target: class indices ``()`` / ``(N,)`` / ``(N, d1, ..., dK)``, or class probabilities
            of the logits' shape ``(C,)`` / ``(N, C)`` / ``(N, C, d1, ..., dK)``.
        linear_bias: optional ``(C,)`` (or ``(C, d1, ..., dK)``).
        weight: optional per-class weight ``(C,)``.
        reduction: ``"none" | "mean" | "sum"`` (as :func:`losskit.cross_entropy`).
        ignore_index: ignored target value (index targets). Default ``-100``, as
            :func:`losskit.cross_entropy`; torch's default ``None`` means -100 for index targets
            and forbids the argument for probability targets, where losskit ignores it.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        chunk_size: rows per chunk; ``None`` picks about 64 MB of float32 logits per chunk (256 MB
            of the input dtype on the CUDA kernel path).

    Returns:
        Scalar, or the target's shape (without the class dimension) for ``reduction="none"``;
        dtype of ``input``.

    Edge cases as :func:`losskit.cross_entropy` (empty batch ``mean`` NaN, ``sum`` 0; all
    ignored ``mean`` NaN with zero gradient). ``linear_weight``'s gradient is accumulated across
    chunks in its own dtype (as Liger-Kernel does), so in bfloat16 it carries one rounding per
    chunk. The gradient is not differentiable again (no double backward).

    Example:
        >>> h = torch.randn(16, 64, requires_grad=True)
        >>> lm_head = torch.randn(1000, 64, requires_grad=True)
        >>> losskit.linear_cross_entropy(h, lm_head, torch.randint(1000, (16,))).backward()

    Mirrors :func:`torch.nn.functional.linear_cross_entropy` (torch >= 2.13) with its
    ``options`` replaced by ``chunk_size`` (always chunked here).
    """
    input, linear_weight, target, linear_bias = _check_linear_args(
        input, linear_weight, target, linear_bias
    )
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    weight = check_optional_floating("weight", weight)
    chunk_size = check_chunk_size(chunk_size)
    num_classes = linear_weight.shape[0]
    check_class_weight(weight, num_classes, input)
    if not target.is_floating_point():
        check_class_indices(target, num_classes, ignore_index)

    # Unchunked for (N, C, d1..dK) logits, as torch, and under torch.func transforms, which
    # cannot follow the chunked Function's gradient computed in the forward.
    if linear_weight.dim() > 2 or functorch_active():
        return _linear_ce_unchunked(
            input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
            label_smoothing,
        )  # fmt: skip

    unbatched = input.dim() == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    problem = dispatch.first_problem(
        None if not target.is_floating_point() else "probability targets are not supported",
        dispatch.dtype_problem("input", input),
        None if num_classes > 0 else "zero classes",
        dispatch.grad_problem(weight=weight, target=target),
    )
    tensors = (input, linear_weight, target, linear_bias, weight)
    use_kernel = dispatch.select("linear_cross_entropy", tensors, problem)
    if chunk_size is None:
        budget = _KERNEL_CHUNK_ELEMENTS if use_kernel else _TORCH_CHUNK_ELEMENTS
        chunk_size = max(1, budget // max(num_classes, 1))
    # Under no_grad, detached arguments keep the forward from computing gradients for nothing.
    input, linear_weight = detach_unless_grad(input), detach_unless_grad(linear_weight)
    if linear_bias is not None:
        linear_bias = detach_unless_grad(linear_bias)
    out = LinearCrossEntropyFunction.apply(
        input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
        label_smoothing, chunk_size, use_kernel,
    )  # fmt: skip
    if unbatched and reduction == "none":
        out = out.squeeze(0)
    return out


def _linear_ce_unchunked(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    reduction: str,
    ignore_index: int,
    label_smoothing: float,
) -> torch.Tensor:
    # Logits (N, C) or (C,), or for a K-dimensional weight (N, C, d1..dK), which torch computes
    # unchunked too.
    from .classification import cross_entropy

    out_shape = linear_weight.shape[:-1]
    flat_w = linear_weight.reshape(-1, linear_weight.shape[-1])
    flat_b = None if linear_bias is None else linear_bias.reshape(-1)
    logits = F.linear(input, flat_w, flat_b).reshape(*input.shape[:-1], *out_shape)
    return cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)


def _grad_of_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    w_sum: torch.Tensor | float,
    ignore_index: int,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyTorch path of one chunk: per-row loss, log-sum-exp and d loss_row / d logits (float32+).

    Index targets: ``d/dx = (1-eps) w_y (p - onehot(y)) + eps/C (p sum_c w_c - w)``, zero for
    ignored rows. Probability targets ``t' = (1-eps) t + eps/C``: ``(sum_c w_c t'_c) p - w t'``.
    """
    x = upcast(logits)
    n_cols = x.shape[1]
    lse = torch.logsumexp(x, dim=1)
    logp = x - lse.unsqueeze(1)
    p = torch.exp(logp)
    if target.is_floating_point():
        t = upcast(target) * (1.0 - eps) + eps / n_cols
        wt = t if weight is None else t * weight
        loss = -(wt * logp).sum(1)
        grad = wt.sum(1, keepdim=True) * p - wt
        return loss, lse, grad
    keep = target != ignore_index
    safe = torch.where(keep, target, 0).long()
    w_y = torch.ones_like(lse) if weight is None else weight[safe]
    w_y = torch.where(keep, w_y, 0.0)
    zero = lse.new_zeros(())
    nll = torch.where(keep, -logp.gather(1, safe.unsqueeze(1)).squeeze(1) * w_y, zero)
    coef = (1.0 - eps) * w_y
    grad = p * coef.unsqueeze(1)
    grad.scatter_add_(1, safe.unsqueeze(1), -coef.unsqueeze(1))
    loss = (1.0 - eps) * nll
    if eps > 0.0:
        wlogp = logp if weight is None else logp * weight
        smooth = torch.where(keep, -wlogp.sum(1), zero)
        loss = loss + eps / n_cols * smooth
        w_row = torch.ones_like(p[:1]) if weight is None else weight.unsqueeze(0)
        grad += (eps / n_cols) * (w_sum * p - w_row) * keep.unsqueeze(1)
    return loss, lse, grad


def _dense_like(t: torch.Tensor) -> torch.Tensor:
    """An empty contiguous buffer of ``t``'s shape: gradients are written and scaled as flat
    arrays, and ``empty_like`` would copy the strides of a transposed weight (``W.t()``)."""
    return torch.empty_like(t, memory_format=torch.contiguous_format)


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Chunked ``cross_entropy(x W^T + b, y)`` with gradients for ``x``, ``W`` and ``b``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        reduction: str,
        ignore_index: int,
        eps: float,
        chunk: int,
        use_kernel: bool,
    ) -> torch.Tensor:
        n, n_cols = x.shape[0], w.shape[0]
        acc_dtype = upcast(x.new_empty(())).dtype
        cw = None if weight is None else weight.to(device=x.device, dtype=acc_dtype).contiguous()
        w_sum = torch.tensor(float(n_cols), device=x.device) if cw is None else cw.sum()
        if target.is_floating_point():
            denom = torch.tensor(float(n), device=x.device, dtype=acc_dtype)
        else:
            keep = target != ignore_index
            safe = target.long().clamp(0, max(n_cols - 1, 0))  # uint8 would index as a mask
            denom = (keep.to(acc_dtype) if cw is None else cw[safe] * keep).sum()
        if reduction == "mean":
            # 0 where nothing is kept: those rows' gradients are 0 and 0 * inf would be NaN.
            scale = torch.where(denom != 0, 1.0 / denom, torch.zeros_like(denom))
        else:
            scale = torch.ones((), device=x.device, dtype=acc_dtype)
        consts = torch.stack([scale.float(), scale.float(), w_sum.float()])

        needs = ctx.needs_input_grad
        fused = reduction != "none" and any(needs[:3])
        gx = _dense_like(x) if fused and needs[0] else None
        gw = _dense_like(w) if fused and needs[1] else None
        gb = torch.zeros(n_cols, device=x.device, dtype=acc_dtype) if fused and needs[2] else None
        loss_rows = torch.empty(
            n, device=x.device, dtype=torch.float32 if use_kernel else acc_dtype
        )
        lse_rows = torch.empty(n, 2, device=x.device, dtype=torch.float32)  # kernel path only
        for r0 in range(0, n, chunk):
            r1 = min(r0 + chunk, n)
            xc = x[r0:r1]
            logits = F.linear(xc, w, b)
            g = _chunk_forward(
                logits, target[r0:r1], cw, consts, scale, w_sum, loss_rows[r0:r1],
                lse_rows[r0:r1], ignore_index, eps, use_kernel, fused,
            )  # fmt: skip
            if fused:
                _accumulate(g, xc, w, gx, gw, gb, r0, r1, first=r0 == 0)
            del logits, g  # free this chunk before the next one is allocated
        if gw is not None and n == 0:
            gw.zero_()

        ctx.reduction = reduction
        ctx.use_kernel = use_kernel
        if reduction == "none":
            out = loss_rows.reshape(target.shape[:1])
            ctx.save_for_backward(x, w, b, target, cw, lse_rows)
            ctx.opts = (ignore_index, eps, chunk, w_sum)
        else:
            total = loss_rows.sum()
            out = total / denom if reduction == "mean" else total  # 0 / 0 = NaN, as torch
            ctx.grads = (gx, gw, None if gb is None else gb.to(b.dtype))
        return out.to(x.dtype)

    @staticmethod
    @first_order_only(
        "linear_cross_entropy",
        "compute cross_entropy(F.linear(input, linear_weight, linear_bias), target) instead",
    )
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        none = (None,) * 7
        if ctx.reduction != "none":
            gx, gw, gb = ctx.grads
            if ctx.use_kernel:
                # Scaled in place (free when grad_out is 1); a second backward would rescale.
                from .kernels.common.function import once_only, scale_by_upstream_

                once_only(ctx, "linear_cross_entropy")
                ctx.grads = None
                for g in (gx, gw, gb):
                    if g is not None:
                        scale_by_upstream_(g.view(-1), grad_out)
                return gx, gw, gb, *none
            # PyTorch path: out of place, so retain_graph / gradcheck may call backward again.
            go = grad_out.to(
                gx.dtype if gx is not None else gw.dtype if gw is not None else gb.dtype
            )
            return tuple(None if g is None else g * go for g in (gx, gw, gb)) + none
        x, w, b, target, cw, lse_rows = ctx.saved_tensors
        ignore_index, eps, chunk, w_sum = ctx.opts
        needs = ctx.needs_input_grad
        acc_dtype = upcast(x.new_empty(())).dtype
        gx = _dense_like(x) if needs[0] else None
        gw = _dense_like(w) if needs[1] else None
        gb = torch.zeros(w.shape[0], device=x.device, dtype=acc_dtype) if needs[2] else None
        if gw is not None and x.shape[0] == 0:
            gw.zero_()
        go = grad_out.reshape(-1).to(acc_dtype)
        zero = torch.zeros((), device=x.device)
        consts = torch.stack([zero, zero, w_sum.float()])
        for r0 in range(0, x.shape[0], chunk):
            r1 = min(r0 + chunk, x.shape[0])
            xc = x[r0:r1]
            logits = F.linear(xc, w, b)
            if ctx.use_kernel:
                from .kernels.cross_entropy.function import rows_backward

                rows_backward(
                    logits, target[r0:r1], cw, consts, go[r0:r1].contiguous(),
                    lse_rows[r0:r1], logits, ignore_index=ignore_index, eps=eps,
                )  # fmt: skip
                g = logits
            else:
                _, _, g = _grad_of_logits(logits, target[r0:r1], cw, w_sum, ignore_index, eps)
                g = (g * go[r0:r1].unsqueeze(1)).to(x.dtype)
            _accumulate(g, xc, w, gx, gw, gb, r0, r1, first=r0 == 0)
            del logits, g
        return gx, gw, None if gb is None else gb.to(b.dtype), *none


def _chunk_forward(
    logits: torch.Tensor,
    target: torch.Tensor,
    cw: torch.Tensor | None,
    consts: torch.Tensor,
    scale: torch.Tensor,
    w_sum: torch.Tensor,
    loss_rows: torch.Tensor,
    lse_rows: torch.Tensor,
    ignore_index: int,
    eps: float,
    use_kernel: bool,
    fused: bool,
) -> torch.Tensor | None:
    """Loss of one chunk into ``loss_rows``; returns the chunk's scaled logits gradient if fused."""
    if use_kernel:
        from .kernels.cross_entropy.function import rows_forward

        # The chunk's logits are ours: the kernel overwrites them with their gradient.
        rows_forward(
            logits, target.contiguous(), None if cw is None else cw.float(), consts,
            logits if fused else None, loss_rows, lse_rows, ignore_index=ignore_index, eps=eps,
        )  # fmt: skip
        return logits if fused else None
    loss, _, grad = _grad_of_logits(logits, target, cw, w_sum, ignore_index, eps)
    loss_rows.copy_(loss)
    if not fused:
        return None
    return (grad * scale).to(logits.dtype)


def _accumulate(
    g: torch.Tensor,
    xc: torch.Tensor,
    w: torch.Tensor,
    gx: torch.Tensor | None,
    gw: torch.Tensor | None,
    gb: torch.Tensor | None,
    r0: int,
    r1: int,
    first: bool,
) -> None:
    if gx is not None:
        torch.mm(g, w, out=gx[r0:r1])
    if gw is not None:
        if first:  # written, not accumulated: no zero fill and no read of gw
            torch.mm(g.t(), xc, out=gw)
        else:
            gw.addmm_(g.t(), xc)
    if gb is not None:
        gb += g.sum(0, dtype=gb.dtype)
