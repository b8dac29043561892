"""Module forms of the language-model head losses."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import linear as F
from .._checks import check_class_weight, check_floating, check_int, check_range
from ..lm import causal as C
from ._base import Loss, WeightedLoss

__all__ = ["CausalLMLoss", "CrossEntropyWithZLoss", "LinearCrossEntropyLoss"]


def _check_out_features(out_features: object) -> tuple[int, ...]:
    if not isinstance(out_features, (tuple, list)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in out_features
    ):
        raise TypeError(
            f"out_features must be a tuple of ints >= 1 (the d1..dK of a K-dimensional loss), "
            f"got {out_features!r}"
        )
    return tuple(out_features)


class LinearCrossEntropyLoss(Loss):
    """Module form of :func:`losskit.linear_cross_entropy`; owns the projection, like torch's.

    ``self.linear`` is an ``nn.Linear(in_features, num_classes * prod(out_features), bias)``
    stored flat, as torch stores it (so torch's state dicts load as they are); ``forward(input,
    target)`` reshapes it to ``(num_classes, *out_features, in_features)`` and computes
    ``linear_cross_entropy(input, weight, target, linear_bias=bias, ...)``. ``weight`` is a
    buffer. Mirrors :class:`torch.nn.LinearCrossEntropyLoss` (torch >= 2.13): same arguments
    (``options`` maps onto the chunking), plus losskit's ``chunk_size``, ``chunk_bytes``,
    ``softcap``, ``logit_scale`` and ``lse_square_scale``. To put the loss on a model's own
    head instead, use :class:`CausalLMLoss`.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reduction: str = "mean",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options: object = None,
        chunk_size: int | None = None,
        chunk_bytes: int | None = None,
        softcap: float | None = None,
        logit_scale: float = 1.0,
        lse_square_scale: float = 0.0,
    ) -> None:
        super().__init__(reduction)
        in_features = check_int("in_features", in_features)
        num_classes = check_int("num_classes", num_classes)
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be >= 1, got {in_features} and {num_classes}"
            )
        self.out_features = _check_out_features(out_features)
        if weight is not None:
            check_floating("weight", weight)
            check_class_weight(weight, num_classes, weight)
        self.register_buffer("weight", weight)
        self.ignore_index = F.check_ignore_index(ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.options = F.check_options(options)
        self.chunk_size = F.check_chunk_size(chunk_size)
        self.chunk_bytes = F.check_chunk_bytes(chunk_bytes)
        self.softcap = F.check_softcap(softcap)
        self.logit_scale = F.check_logit_scale(logit_scale)
        self.lse_square_scale = F.check_lse_square_scale(lse_square_scale)
        self.num_classes = num_classes
        self.linear = nn.Linear(
            in_features,
            math.prod(self.out_features, start=num_classes),
            bias=bias,
            device=device,
            dtype=dtype,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shape = (self.num_classes, *self.out_features)
        linear_bias = None if self.linear.bias is None else self.linear.bias.reshape(shape)
        return F.linear_cross_entropy(
            input,
            self.linear.weight.reshape(*shape, self.linear.in_features),
            target,
            linear_bias=linear_bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            options=self.options,
            chunk_size=self.chunk_size,
            chunk_bytes=self.chunk_bytes,
            softcap=self.softcap,
            logit_scale=self.logit_scale,
            lse_square_scale=self.lse_square_scale,
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_classes={self.num_classes}, "
            f"out_features={self.out_features}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, chunk_size={self.chunk_size}, "
            f"softcap={self.softcap}, logit_scale={self.logit_scale}, "
            f"lse_square_scale={self.lse_square_scale}"
        )


class CausalLMLoss(Loss):
    """Module form of :func:`losskit.lm.causal_lm_loss` on a model's existing head.

    ``CausalLMLoss(model.lm_head)`` (an ``nn.Linear``), ``CausalLMLoss(model.embed_tokens)``
    (an ``nn.Embedding``: tied weights) or ``CausalLMLoss(weight)`` (a ``(V, H)`` parameter)
    keeps a reference to that head and allocates nothing: the head is not registered as a
    submodule, so it appears once in the model's ``parameters()`` and ``state_dict()``, where
    it belongs. ``forward(hidden_states, labels, num_items_in_batch=None)``.

    Example:
        >>> lm_head = torch.nn.Linear(64, 1000, bias=False)
        >>> crit = losskit.nn.CausalLMLoss(lm_head, z_loss=1e-4)
        >>> crit(torch.randn(2, 16, 64), torch.randint(1000, (2, 16)))
        tensor(...)
    """

    def __init__(
        self,
        head: nn.Linear | nn.Embedding | torch.Tensor,
        *,
        shift: bool = True,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        softcap: float | None = None,
        logit_scale: float = 1.0,
        z_loss: float = 0.0,
        reduction: str = "mean",
        chunk_bytes: int | None = None,
    ) -> None:
        super().__init__(reduction)
        if not isinstance(head, (nn.Linear, nn.Embedding, torch.Tensor)):
            raise TypeError(
                "head must be an nn.Linear (lm_head), an nn.Embedding (tied input embedding) or "
                f"a (V, H) weight tensor, got {type(head).__name__}"
            )
        if isinstance(head, torch.Tensor) and head.dim() != 2:
            raise ValueError(f"a head weight must be (V, H), got shape {tuple(head.shape)}")
        if not isinstance(shift, bool):
            raise TypeError(f"shift must be a bool, got {type(shift).__name__}")
        # A plain attribute, not a submodule or parameter: the model owns the head.
        object.__setattr__(self, "_head", head)
        self.shift = shift
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.softcap = F.check_softcap(softcap)
        self.logit_scale = F.check_logit_scale(logit_scale)
        self.z_loss = C.check_z_loss(z_loss)
        self.chunk_bytes = F.check_chunk_bytes(chunk_bytes)

    @property
    def head(self) -> nn.Linear | nn.Embedding | torch.Tensor:
        return self._head

    def forward(
        self,
        hidden_states: torch.Tensor,
        labels: torch.Tensor,
        num_items_in_batch: int | float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        head = self._head
        if isinstance(head, torch.Tensor):
            weight, bias = head, None
        else:
            weight, bias = head.weight, getattr(head, "bias", None)
        return C.causal_lm_loss(
            hidden_states,
            weight,
            labels,
            lm_head_bias=bias,
            shift=self.shift,
            ignore_index=self.ignore_index,
            num_items_in_batch=num_items_in_batch,
            label_smoothing=self.label_smoothing,
            softcap=self.softcap,
            logit_scale=self.logit_scale,
            z_loss=self.z_loss,
            reduction=self.reduction,
            chunk_bytes=self.chunk_bytes,
        )

    def extra_repr(self) -> str:
        head = self._head
        desc = type(head).__name__ if not isinstance(head, torch.Tensor) else "tensor"
        return (
            f"{super().extra_repr()}, head={desc}{tuple(getattr(head, 'weight', head).shape)}, "
            f"shift={self.shift}, softcap={self.softcap}, logit_scale={self.logit_scale}, "
            f"z_loss={self.z_loss}"
        )


class CrossEntropyWithZLoss(WeightedLoss):
    """Module form of :func:`losskit.cross_entropy_with_z_loss` (returns the total loss)."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.lse_square_scale = F.check_lse_square_scale(lse_square_scale)
        self.softcap = F.check_softcap(softcap)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy_with_z_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )
