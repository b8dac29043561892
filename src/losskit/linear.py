"""Language-model head losses: cross entropy fused with the vocabulary projection, and z-loss.

:func:`linear_cross_entropy` computes ``cross_entropy(cap(s * (input @ W.T + b)), target)`` (plus
an optional z-loss) a chunk of rows at a time, so the full ``N × V`` logits never exist; the
chunked engine is :mod:`losskit._chunked_linear`, reached through the dispatch seam (a ``formula``
backend, and a ``kernel`` backend whose chunks run the fused cross-entropy kernel on CUDA).
:func:`cross_entropy_with_z_loss` adds the PaLM z-loss and logit soft-capping to class-index cross
entropy on materialised logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._autograd import detach_unless_grad, functorch_active
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
from ._chunked_linear import Opts, default_chunk_bytes, rows_per_chunk
from ._dispatch import Backends, state
from ._precision import compute_dtype, upcast
from ._reduction import check_reduction
from .kernels import dispatch

__all__ = ["cross_entropy_with_z_loss", "linear_cross_entropy"]


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

    return _Z_LOSS(
        input, target, weight, ignore_index, reduction, label_smoothing, lse_square_scale,
        softcap, return_z_loss, inplace_backward,
    )  # fmt: skip


def _z_loss_formula(
    input, target, weight, ignore_index, reduction, label_smoothing, lse_square_scale, softcap,
    return_z_loss, inplace_backward,
):  # fmt: skip
    loss, z = _z_loss_torch(
        input, target, weight, ignore_index, reduction, label_smoothing, lse_square_scale, softcap
    )
    return (loss, z) if return_z_loss else loss


def _z_loss_refuses_kernel(input, target, weight, *args) -> str | None:
    num_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    return dispatch.first_problem(
        dispatch.dtype_problem("input", input),
        None if num_classes > 0 else "zero classes",
        dispatch.grad_problem(weight=weight),
    )


def _z_loss_kernel(
    input, target, weight, ignore_index, reduction, label_smoothing, lse_square_scale, softcap,
    return_z_loss, inplace_backward,
):  # fmt: skip
    from .kernels.cross_entropy.function import triton_cross_entropy

    return triton_cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing,
        lse_square_scale=lse_square_scale, softcap=softcap,
        return_z_loss=return_z_loss, inplace_backward=inplace_backward,
    )  # fmt: skip


_Z_LOSS = Backends(
    "cross_entropy_with_z_loss",
    formula=_z_loss_formula,
    kernel=_z_loss_kernel,
    refuses={"kernel": _z_loss_refuses_kernel},
)
cross_entropy_with_z_loss.backends = _Z_LOSS  # type: ignore[attr-defined]


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
    if linear_weight.dim() < 2:
        raise ValueError(
            "linear_weight must be (C, in_features) or (C, d1, ..., dK, in_features), "
            f"got shape {tuple(linear_weight.shape)}"
        )
    k_dim = linear_weight.dim() > 2
    if input.dim() == 0 or (k_dim and input.dim() != 2):
        expected = "(N, in_features)" if k_dim else "(in_features,) or (..., in_features)"
        raise ValueError(f"input must be {expected}, got shape {tuple(input.shape)}")
    if linear_weight.shape[-1] != input.shape[-1]:
        raise ValueError(
            f"input has {input.shape[-1]} in_features but linear_weight of shape "
            f"{tuple(linear_weight.shape)} expects {linear_weight.shape[-1]}"
        )
    # Under autocast the products run in its dtype whatever the inputs' (as F.linear does).
    autocast = torch.is_autocast_enabled(input.device.type)
    if linear_weight.dtype != input.dtype and not autocast:
        raise TypeError(
            f"linear_weight has dtype {linear_weight.dtype} but input has {input.dtype}; "
            "they must match"
        )
    out_shape = tuple(linear_weight.shape[:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != out_shape:
        raise ValueError(f"linear_bias must have shape {out_shape}, got {tuple(linear_bias.shape)}")
    if linear_bias is not None and linear_bias.dtype != input.dtype and not autocast:
        raise TypeError(
            f"linear_bias has dtype {linear_bias.dtype} but input has {input.dtype}; "
            "they must match"
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


def check_chunk_bytes(chunk_bytes: object) -> int | None:
    if chunk_bytes is None:
        return None
    c = check_int("chunk_bytes", chunk_bytes)
    if c < 1:
        raise ValueError(f"chunk_bytes must be None or an int >= 1 (bytes), got {chunk_bytes!r}")
    return c


def check_logit_scale(logit_scale: object) -> float:
    s = check_number("logit_scale", logit_scale)
    if not (0.0 < s < math.inf):
        raise ValueError(f"logit_scale must be a finite number > 0, got {logit_scale!r}")
    return s


def check_ignore_index(ignore_index: object) -> int | None:
    """``None`` (torch's default: -100 for index targets) or an int."""
    return None if ignore_index is None else check_int("ignore_index", ignore_index)


def check_options(options: object) -> object:
    """``None`` or a ``torch.nn.LinearCrossEntropyOptions`` (duck-typed: torch >= 2.13)."""
    if options is None:
        return None
    if not all(hasattr(options, a) for a in ("batch_chunk_size", "chunking_method")):
        raise TypeError(
            "options must be None or a torch.nn.LinearCrossEntropyOptions, "
            f"got {type(options).__name__}"
        )
    return options


def _options_chunk(options: object, n_rows: int, in_features: int, n_cols: int) -> int | None:
    """Rows per chunk that torch's ``LinearCrossEntropyOptions`` asks for (None: losskit's)."""
    method = options.chunking_method
    if method not in (None, "auto"):
        # torch's "aspect_ratio[:k]": a chunk of logits as large as the input, divided by k.
        factor = int(method.split(":", 1)[1]) if ":" in method else 1
        rows = -(-max(n_rows, 1) // -(-n_cols // max(in_features, 1)))
        return max(1, min((1 << (rows - 1).bit_length()) // factor, max(n_rows, 1)))
    return options.batch_chunk_size


def _matmul_dtype(input: torch.Tensor) -> torch.dtype:
    device = input.device.type
    if torch.is_autocast_enabled(device) and input.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return input.dtype


def _lce_refuses_kernel(x, w, b, target, weight, opts) -> str | None:
    """The calls the Triton path does not take (it runs the same chunks with the kernel's math)."""
    if target.is_floating_point():
        return "probability targets are not supported"
    if opts.mm_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"matmul dtype {opts.mm_dtype} (kernels take float32, float16 and bfloat16)"
    if w.shape[0] == 0:
        return "zero classes"
    if weight is not None and weight.requires_grad:
        return "a class weight that requires grad"
    return None


def _lce_formula(x, w, b, target, weight, opts):
    from ._chunked_linear import ChunkedLinearCrossEntropy

    # The chunks choose their own dtypes (opts.mm_dtype); autocast would recast every product.
    with torch.autocast(x.device.type, enabled=False):
        return ChunkedLinearCrossEntropy.apply(x, w, b, target, weight, opts)


def _lce_kernel(x, w, b, target, weight, opts):
    from dataclasses import replace

    return _lce_formula(x, w, b, target, weight, replace(opts, use_kernel=True))


_LCE = Backends(
    "linear_cross_entropy",
    formula=_lce_formula,
    kernel=_lce_kernel,
    refuses={"kernel": _lce_refuses_kernel},
)


def _drop_ignored(x: torch.Tensor) -> bool:
    """Whether the chunked path skips the ignored rows. That reads the target (a host sync on
    CUDA): never while compiling, and on CUDA only under the value checks, so that
    ``set_checks("shapes")`` reads no tensor on the host."""
    if torch.compiler.is_compiling():
        return False
    return x.is_cpu or state.checks == "all"


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: object = None,
    chunk_size: int | None = None,
    chunk_bytes: int | None = None,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    lse_square_scale: float = 0.0,
    return_z_loss: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Cross entropy of a linear projection (a language-model head), without the full logits.

    With logits :math:`z = s\,(x W^\top + b)`, soft-capped :math:`z' = c \tanh(z / c)` (no cap
    when ``softcap`` is ``None``) and :math:`\mathrm{lse}_i = \log \sum_v e^{z'_{iv}}`:

    .. math::
        \ell_i = \mathrm{cross\_entropy}(z'_i, y_i) + \lambda\, \mathrm{lse}_i^2

    with every option of :func:`losskit.cross_entropy` (class weights, ``ignore_index``, label
    smoothing, class-index or class-probability targets); :math:`s` is ``logit_scale``,
    :math:`c` ``softcap``, :math:`\lambda` ``lse_square_scale`` (the z-loss; ``mean`` divides
    it by the number of kept rows).

    Rows are processed a chunk at a time: the chunk's logits are made (the matrix product in the
    autocast dtype under :func:`torch.autocast`, else the input's), their softmax statistics
    computed in float32, their gradient written over the same buffer and multiplied at once into
    the gradients of ``input``, ``linear_weight`` (accumulated in float32 across chunks) and
    ``linear_bias``. Ignored rows are dropped before the first product, so they cost nothing.

    Memory: one chunk of float32 logits is alive at a time, ``chunk_bytes`` (32 MiB by default,
    and never more than a quarter of the rows, so chunking saves memory at every vocabulary
    size); ``softcap`` keeps a second buffer (``tanh`` for its derivative); under autocast the
    budget holds the chunk and its half copy, plus the half copy of the weight that autocast
    would make too. Measured (resident set of a child process, ``tests/test_linear_head.py``),
    peak beyond the gradients in chunk budgets: 0.9-1.0 in float32, 1.9 with ``softcap``, 1.1
    under bfloat16 autocast (beyond the weight's bfloat16 copy); the unfused formula takes 46
    there. At N=4096, H=512, V=32768 float32: 33 MiB against 1464 MiB for
    ``cross_entropy(linear(x, W), y)`` and 72 MiB for torch's chunked op
    (``benchmarks/bench_lm_head_cpu.py``).

    Args:
        input: ``(in_features,)`` or ``(..., in_features)`` (e.g. ``(B, T, H)`` hidden states);
            ``(N, in_features)`` with a K-dimensional ``linear_weight``.
        linear_weight: ``(C, in_features)``, or ``(C, d1, ..., dK, in_features)`` for a
            K-dimensional loss (computed unchunked, as torch does).
        target: class indices of ``input``'s shape without its last dimension (``(N, d1, ...,
            dK)`` with a K-dimensional weight), or class probabilities of the logits' shape.
        linear_bias: optional ``(C,)`` (or ``(C, d1, ..., dK)``).
        weight: optional per-class weight ``(C,)``.
        reduction: ``"none" | "mean" | "sum"`` (as :func:`losskit.cross_entropy`).
        ignore_index: ignored target value (index targets); ``None`` (default, as torch) means
            -100. Giving it with probability targets raises, as torch does.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        options: a ``torch.nn.LinearCrossEntropyOptions``: its ``batch_chunk_size`` /
            ``chunking_method`` choose the chunk; ``acc_policy`` / ``acc_dtype`` are ignored
            (losskit always accumulates in float32). Always chunked, even with ``None``.
        chunk_size: rows per chunk (overrides ``chunk_bytes`` and ``options``).
        chunk_bytes: memory budget of one chunk's logits in bytes (default 32 MiB on the CPU,
            512 MiB on CUDA).
        softcap: :math:`c > 0` or ``None`` (Gemma 2's ``final_logit_softcapping``).
        logit_scale: :math:`s > 0`, multiplies the logits before the softcap (Cohere, Granite).
        lse_square_scale: :math:`\lambda \ge 0`, the z-loss of PaLM.
        return_z_loss: also return the z term alone (same reduction, no gradient), to log it.

    Returns:
        The loss: a scalar, or for ``reduction="none"`` the target's shape (without the class
        dimension); float32 for float16/bfloat16 inputs (the statistics' dtype, as Hugging Face
        and Liger report it), else the input's dtype. With ``return_z_loss``,
        ``(loss, z_loss)``.

    Edge cases as :func:`losskit.cross_entropy` (empty batch ``mean`` NaN, ``sum`` 0; all
    ignored ``mean`` NaN with zero gradient). The gradient is not differentiable again; a second
    backward (``retain_graph=True``) recomputes it.

    Example:
        >>> h = torch.randn(2, 8, 64, requires_grad=True)  # (B, T, H)
        >>> lm_head = torch.randn(1000, 64, requires_grad=True)
        >>> loss, z = losskit.linear_cross_entropy(
        ...     h, lm_head, torch.randint(1000, (2, 8)), softcap=30.0,
        ...     lse_square_scale=1e-4, return_z_loss=True)
        >>> loss.backward()

    Mirrors :func:`torch.nn.functional.linear_cross_entropy` (torch >= 2.13). Differences:
    always chunked (torch materialises the logits when ``options`` is ``None``); ``(..., H)``
    inputs (torch takes ``(N, H)``); half inputs give a float32 loss (torch: the input dtype);
    the chunked path takes label smoothing, probability targets and class weights (torch's falls
    back to the unchunked formula). Same options as Liger-Kernel's and Apple's
    cut-cross-entropy's fused heads (softcap, z-loss).
    """
    input, linear_weight, target, linear_bias = _check_linear_args(
        input, linear_weight, target, linear_bias
    )
    reduction = check_reduction(reduction)
    ignore_index = check_ignore_index(ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    weight = check_optional_floating("weight", weight)
    options = check_options(options)
    chunk_size = check_chunk_size(chunk_size)
    chunk_bytes = check_chunk_bytes(chunk_bytes)
    softcap = check_softcap(softcap)
    logit_scale = check_logit_scale(logit_scale)
    lse_square_scale = check_lse_square_scale(lse_square_scale)
    return_z_loss = check_bool("return_z_loss", return_z_loss)
    num_classes = linear_weight.shape[0]
    check_class_weight(weight, num_classes, input)
    if target.is_floating_point():
        if ignore_index is not None:
            raise ValueError(
                f"ignore_index cannot be specified when target contains probabilities "
                f"(got ignore_index={ignore_index})"
            )
        ignore_index = -100
    else:
        ignore_index = -100 if ignore_index is None else ignore_index
        check_class_indices(target, num_classes, ignore_index)

    # K-dimensional logits (N, C, d1..dK) are computed unchunked, as torch does; so is every call
    # under torch.func transforms, which cannot follow gradients computed in the forward.
    if linear_weight.dim() > 2 or functorch_active():
        out = _linear_ce_unchunked(
            input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
            label_smoothing, softcap, logit_scale, lse_square_scale,
        )  # fmt: skip
        return out if return_z_loss else out[0]

    hidden = input.shape[-1]
    batch = input.shape[:-1]
    x = input.reshape(-1, hidden)
    t = target.reshape(-1, num_classes) if target.is_floating_point() else target.reshape(-1)
    mm_dtype = _matmul_dtype(input)
    n = x.shape[0]
    if chunk_size is None and options is not None:
        chunk_size = _options_chunk(options, n, hidden, num_classes)
    if chunk_size is None:
        chunk_bytes = chunk_bytes or default_chunk_bytes(x.device)
        chunk_size = rows_per_chunk(n, num_classes, mm_dtype, chunk_bytes)
    opts = Opts(
        reduction=reduction,
        ignore_index=ignore_index,
        eps=label_smoothing,
        chunk=chunk_size,
        softcap=softcap,
        logit_scale=logit_scale,
        z_scale=lse_square_scale,
        mm_dtype=mm_dtype,
        acc_dtype=compute_dtype(input.dtype),
        drop_ignored=_drop_ignored(x),
        use_kernel=False,
    )
    cw = None if weight is None else weight.to(device=x.device, dtype=opts.acc_dtype)
    # Under no_grad, detached arguments keep the forward from computing gradients for nothing.
    x, w = detach_unless_grad(x), detach_unless_grad(linear_weight)
    b = None if linear_bias is None else detach_unless_grad(linear_bias)
    loss, z = _LCE(x, w, b, t, cw, opts)
    if reduction == "none":
        loss, z = loss.reshape(batch), z.reshape(batch)
    out_dtype = opts.acc_dtype
    loss, z = loss.to(out_dtype), z.to(out_dtype)
    return (loss, z) if return_z_loss else loss


linear_cross_entropy.backends = _LCE


def _linear_ce_unchunked(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    reduction: str,
    ignore_index: int,
    label_smoothing: float,
    softcap: float | None,
    logit_scale: float,
    lse_square_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Logits (N, C) or (C,), or for a K-dimensional weight (N, C, d1..dK), which torch computes
    # unchunked too.
    out_shape = linear_weight.shape[:-1]
    flat_w = linear_weight.reshape(-1, linear_weight.shape[-1])
    flat_b = None if linear_bias is None else linear_bias.reshape(-1)
    logits = F.linear(input, flat_w, flat_b)
    if input.dim() > 2 and linear_weight.dim() == 2:  # (..., H): classes last, rows flattened
        logits = logits.reshape(-1, logits.shape[-1])
        target = target.reshape(-1, *target.shape[input.dim() - 1 :])
    else:
        logits = logits.reshape(*input.shape[:-1], *out_shape)
    logits = upcast(logits) * logit_scale
    if softcap is None and lse_square_scale == 0.0:
        from .classification import cross_entropy

        loss = cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)
        z = torch.zeros_like(loss)
    else:
        w = None if weight is None else weight.to(logits.dtype)
        if target.is_floating_point():
            x = logits if softcap is None else softcap * torch.tanh(logits / softcap)
            loss = F.cross_entropy(
                x, target, w, reduction=reduction, label_smoothing=label_smoothing
            )
            lse = torch.logsumexp(x, dim=1)
            z_pos = lse_square_scale * lse * lse
            z = (
                z_pos
                if reduction == "none"
                else z_pos.sum()
                if reduction == "sum"
                else z_pos.mean()
            )
            loss = loss + z
        else:
            loss, z = _z_loss_torch(
                logits, target, w, ignore_index, reduction, label_smoothing, lse_square_scale,
                softcap,
            )  # fmt: skip
    if reduction == "none" and input.dim() > 2 and linear_weight.dim() == 2:
        loss, z = loss.reshape(input.shape[:-1]), z.reshape(input.shape[:-1])
    return loss, z.detach()
