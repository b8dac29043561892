"""The causal language-model loss from hidden states: shift, fused head, Trainer's normaliser."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_floating, check_int, check_number, check_range, check_tensor
from .._dispatch import Backends
from .._reduction import check_reduction
from ..linear import (
    check_chunk_bytes,
    check_logit_scale,
    check_softcap,
    linear_cross_entropy,
)

__all__ = ["causal_lm_loss"]


def _check_num_items(num_items: object) -> object:
    if num_items is None:
        return None
    if isinstance(num_items, torch.Tensor):
        if num_items.numel() != 1 or num_items.is_complex() or num_items.dtype == torch.bool:
            raise ValueError(
                "num_items_in_batch must be a number or a one-element real tensor, got a tensor "
                f"of shape {tuple(num_items.shape)} and dtype {num_items.dtype}"
            )
        return num_items
    value = check_number("num_items_in_batch", num_items)
    if value < 0:
        raise ValueError(f"num_items_in_batch must be >= 0, got {num_items!r}")
    return value


def _causal_formula(
    hidden, weight, bias, target, ignore_index, num_items, eps, softcap, scale, z, reduction,
    chunk_bytes,
):  # fmt: skip
    # num_items_in_batch is the divisor of the mean; "sum" and "none" do not divide.
    num_items = num_items if reduction == "mean" else None
    reduce = "sum" if num_items is not None else reduction
    loss = linear_cross_entropy(
        hidden, weight, target, linear_bias=bias, reduction=reduce, ignore_index=ignore_index,
        label_smoothing=eps, chunk_bytes=chunk_bytes, softcap=softcap, logit_scale=scale,
        lse_square_scale=z,
    )  # fmt: skip
    if num_items is not None:
        if isinstance(num_items, torch.Tensor):
            num_items = num_items.to(device=loss.device, dtype=loss.dtype).reshape(())
        loss = loss / num_items
    return loss


# A thin layer over linear_cross_entropy: each backend is linear_cross_entropy's own (a pinned
# backend stays pinned in the inner call, and linear_cross_entropy's rule refuses what its kernel
# cannot take), so the registry, the suite and the bench see the fused kernel here too.
_CAUSAL = Backends("causal_lm_loss", formula=_causal_formula, kernel=_causal_formula)


def causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    lm_head_bias: torch.Tensor | None = None,
    shift: bool = True,
    ignore_index: int = -100,
    num_items_in_batch: int | float | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    r"""Next-token cross entropy of a causal language model, from its last hidden states.

    With logits :math:`z_t = c \tanh(s\,(h_t W^\top + b) / c)` (no cap when ``softcap`` is
    ``None``) and :math:`\mathrm{lse}_t = \log\sum_v e^{z_{tv}}`, per kept position :math:`t`
    (``labels[..., t + 1] != ignore_index`` with ``shift``):

    .. math::
        \ell_t = (1-\varepsilon)(\mathrm{lse}_t - z_{t,y_{t+1}})
                 + \tfrac{\varepsilon}{V}\textstyle\sum_v (\mathrm{lse}_t - z_{tv})
                 + \lambda\,\mathrm{lse}_t^2

    ``mean`` is :math:`\sum_t \ell_t / n` with :math:`n` = ``num_items_in_batch`` when given
    (Hugging Face ``Trainer``'s convention under gradient accumulation: the tokens of the whole
    accumulated batch), else the number of kept positions. The logits are never materialised:
    :func:`losskit.linear_cross_entropy` computes them a chunk of rows at a time, skipping ignored
    positions (the last one of each sequence with ``shift``).

    Args:
        hidden_states: ``(..., T, H)`` (``(B, T, H)`` from a decoder); float32/float16/bfloat16.
        lm_head_weight: ``(V, H)``: the ``lm_head`` (or tied input embedding) weight.
        labels: ``(..., T)`` token ids, ``ignore_index`` where no loss is wanted.
        lm_head_bias: optional ``(V,)``.
        shift: predict ``labels[..., 1:]`` from ``hidden_states[..., :-1, :]`` (Hugging Face's
            convention: labels are the input ids). ``False``: labels are already aligned.
        ignore_index: label value that contributes nothing (default -100).
        num_items_in_batch: the divisor of ``mean`` (a number or a one-element tensor);
            ``"sum"`` and ``"none"`` do not divide, so they leave it unused.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        softcap: :math:`c > 0` or ``None`` (Gemma 2's ``final_logit_softcapping``).
        logit_scale: :math:`s > 0`, multiplies the logits before the cap (Cohere, Granite).
        z_loss: :math:`\lambda \ge 0` (PaLM's z-loss; 1e-4 there).
        reduction: ``"mean" | "sum" | "none"``.
        chunk_bytes: memory budget of one chunk of logits (see
            :func:`losskit.linear_cross_entropy`).

    Returns:
        A scalar, or for ``"none"`` the per-position losses ``(..., T - 1)`` (``(..., T)``
        without ``shift``), 0 at ignored positions; float32 for float16/bfloat16 inputs.

    Nothing kept: ``mean`` is NaN (0 / 0, as torch), with zero gradients; ``sum`` is 0. Under
    :func:`torch.autocast` the products run in the autocast dtype and the softmax statistics in
    float32.

    Example:
        >>> head = torch.nn.Linear(64, 1000, bias=False)
        >>> h = torch.randn(2, 16, 64, requires_grad=True)
        >>> ids = torch.randint(1000, (2, 16))
        >>> losskit.lm.causal_lm_loss(h, head.weight, ids).backward()

    Same value as Hugging Face transformers' ``ForCausalLMLoss`` on ``lm_head(hidden_states)``
    (which upcasts the logits to float32; it has no z-loss), Liger-Kernel's
    ``LigerFusedLinearCrossEntropyLoss`` and cut-cross-entropy's ``linear_cross_entropy(...,
    shift=1)``.
    """
    hidden_states = check_floating("hidden_states", hidden_states)
    lm_head_weight = check_floating("lm_head_weight", lm_head_weight)
    labels = check_tensor("labels", labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of token ids, got dtype {labels.dtype}")
    shift = bool(shift) if isinstance(shift, bool) else _bad_bool("shift", shift)
    if hidden_states.dim() < 2:
        raise ValueError(
            f"hidden_states must be (..., T, H) with a sequence dimension, got shape "
            f"{tuple(hidden_states.shape)}"
        )
    if tuple(labels.shape) != tuple(hidden_states.shape[:-1]):
        raise ValueError(
            f"labels must have shape {tuple(hidden_states.shape[:-1])} (hidden_states' shape "
            f"without its last dimension), got {tuple(labels.shape)}"
        )
    if lm_head_weight.dim() != 2:
        raise ValueError(f"lm_head_weight must be (V, H), got shape {tuple(lm_head_weight.shape)}")
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    num_items_in_batch = _check_num_items(num_items_in_batch)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    softcap = check_softcap(softcap)
    logit_scale = check_logit_scale(logit_scale)
    z_loss = check_z_loss(z_loss)
    chunk_bytes = check_chunk_bytes(chunk_bytes)
    if shift:
        # Labels moved one step left, the last position ignored: the hidden states stay as they
        # are (no copy), and the ignored positions cost no product.
        target = F.pad(labels[..., 1:], (0, 1), value=ignore_index)
    else:
        target = labels
    loss = _CAUSAL(
        hidden_states, lm_head_weight, lm_head_bias, target, ignore_index, num_items_in_batch,
        label_smoothing, softcap, logit_scale, z_loss, reduction, chunk_bytes,
    )  # fmt: skip
    if reduction == "none" and shift:
        loss = loss[..., :-1]
    return loss


causal_lm_loss.backends = _CAUSAL


def check_z_loss(z_loss: object) -> float:
    value = check_number("z_loss", z_loss)
    if not (0.0 <= value < float("inf")):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss!r}")
    return value


def _bad_bool(name: str, value: object) -> bool:
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
