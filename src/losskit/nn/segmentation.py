"""Module forms of the segmentation losses: hyper-parameters checked in ``__init__``, ``weight`` a
buffer, ``forward(input, target)`` calls the functional."""

from __future__ import annotations

from typing import Any

import torch

from .. import focal as _focal
from .._checks import check_bool, check_range
from ..segmentation import boundary as _boundary
from ..segmentation import combined as _combined
from ..segmentation import dice as _dice
from ..segmentation import lovasz as _lovasz
from ..segmentation import tversky as _tversky
from ..segmentation._contract import (
    check_activation,
    check_ignore_index,
    check_smooth_eps,
    check_weight_tensor,
)
from ._base import Loss

__all__ = [
    "BoundaryLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "LovaszHingeLoss",
    "LovaszSoftmaxLoss",
    "TverskyLoss",
]


class _SegLoss(Loss):
    """Shared checks; subclasses list their options in ``_options`` and name the functional."""

    weight: torch.Tensor | None
    _functional: Any = None
    _activations: tuple = ("softmax", "sigmoid", None)

    def __init__(
        self,
        *,
        activation: str | None = "softmax",
        ignore_index: int | None = None,
        include_background: bool = True,
        weight: torch.Tensor | None = None,
        batch_dice: bool = False,
        reduction: str = "mean",
        **options: Any,
    ) -> None:
        super().__init__(reduction)
        self.activation = check_activation(activation, self._activations)
        self.ignore_index = check_ignore_index(ignore_index)
        self.include_background = check_bool("include_background", include_background)
        self.batch_dice = check_bool("batch_dice", batch_dice)
        self.register_buffer("weight", check_weight_tensor(weight))
        if "smooth" in options:
            options["smooth"], options["eps"] = check_smooth_eps(options["smooth"], options["eps"])
        if "squared_pred" in options:
            options["squared_pred"] = check_bool("squared_pred", options["squared_pred"])
        self.options = options

    def _common(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "ignore_index": self.ignore_index,
            "include_background": self.include_background,
            "weight": self.weight,
            "batch_dice": self.batch_dice,
            "reduction": self.reduction,
        }

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return type(self)._functional(input, target, **self._common(), **self.options)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (
            f"activation={self.activation!r}, ignore_index={self.ignore_index}, "
            f"include_background={self.include_background}, batch_dice={self.batch_dice}"
            + (f", {opts}" if opts else "")
            + f", {super().extra_repr()}"
        )


class DiceLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.dice_loss`."""

    _functional = staticmethod(_dice.dice_loss)

    def __init__(
        self,
        *,
        squared_pred: bool = False,
        smooth: float = 1e-5,
        eps: float = 1e-7,
        **common: Any,
    ) -> None:
        super().__init__(squared_pred=squared_pred, smooth=smooth, eps=eps, **common)


class JaccardLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.jaccard_loss`."""

    _functional = staticmethod(_dice.jaccard_loss)

    def __init__(self, *, smooth: float = 1e-5, eps: float = 1e-7, **common: Any) -> None:
        super().__init__(smooth=smooth, eps=eps, **common)


class GeneralizedDiceLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.generalized_dice_loss`."""

    _functional = staticmethod(_dice.generalized_dice_loss)

    def __init__(self, *, smooth: float = 1e-5, eps: float = 1e-7, **common: Any) -> None:
        super().__init__(smooth=smooth, eps=eps, **common)


class TverskyLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.tversky_loss`."""

    _functional = staticmethod(_tversky.tversky_loss)

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1e-5,
        eps: float = 1e-7,
        **common: Any,
    ) -> None:
        alpha, beta = _tversky.check_alpha_beta(alpha, beta)
        super().__init__(alpha=alpha, beta=beta, smooth=smooth, eps=eps, **common)


class FocalTverskyLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.focal_tversky_loss`."""

    _functional = staticmethod(_tversky.focal_tversky_loss)

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1e-5,
        eps: float = 1e-7,
        **common: Any,
    ) -> None:
        alpha, beta = _tversky.check_alpha_beta(alpha, beta)
        gamma = _tversky.check_tversky_gamma(gamma)
        super().__init__(alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, eps=eps, **common)


class LovaszSoftmaxLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.lovasz_softmax_loss`."""

    _functional = staticmethod(_lovasz.lovasz_softmax_loss)

    def __init__(self, *, classes: str = "present", **common: Any) -> None:
        super().__init__(classes=_lovasz.check_classes(classes), **common)


class LovaszHingeLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.lovasz_hinge_loss` (no activation)."""

    _functional = staticmethod(_lovasz.lovasz_hinge_loss)

    def __init__(self, **common: Any) -> None:
        super().__init__(activation=None, **common)

    def _common(self) -> dict[str, Any]:
        common = super()._common()
        del common["activation"]
        return common


class BoundaryLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.boundary_loss`; ``forward(input, distance)``."""

    _functional = staticmethod(_boundary.boundary_loss)

    def __init__(self, **common: Any) -> None:
        if "ignore_index" in common:
            raise TypeError(
                "BoundaryLoss has no ignore_index (its target is a distance map): give ignored "
                "pixels a distance of 0"
            )
        super().__init__(**common)

    def _common(self) -> dict[str, Any]:
        common = super()._common()
        del common["ignore_index"]
        return common


class DiceCELoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.dice_ce_loss`."""

    _functional = staticmethod(_combined.dice_ce_loss)
    _activations = ("softmax", "sigmoid")
    reductions = ("mean", "sum")

    def __init__(
        self,
        *,
        squared_pred: bool = False,
        smooth: float = 1e-5,
        eps: float = 1e-7,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        ce_include_background: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(
            squared_pred=squared_pred,
            smooth=smooth,
            eps=eps,
            lambda_dice=_combined.check_lambda("lambda_dice", lambda_dice),
            lambda_ce=_combined.check_lambda("lambda_ce", lambda_ce),
            ce_include_background=check_bool("ce_include_background", ce_include_background),
            **common,
        )


class DiceFocalLoss(_SegLoss):
    """Module form of :func:`losskit.segmentation.dice_focal_loss`."""

    _functional = staticmethod(_combined.dice_focal_loss)
    _activations = ("softmax", "sigmoid")
    reductions = ("mean", "sum")

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        squared_pred: bool = False,
        smooth: float = 1e-5,
        eps: float = 1e-7,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        focal_include_background: bool = True,
        **common: Any,
    ) -> None:
        if alpha is not None:
            if common.get("activation", "softmax") == "softmax":
                raise ValueError(
                    "alpha is the sigmoid focal loss's balance; under activation='softmax' give "
                    f"per-class weights in weight=, got alpha={alpha!r}"
                )
            alpha = check_range("alpha", alpha, 0.0, 1.0)
        super().__init__(
            gamma=_focal.check_gamma(gamma),
            alpha=alpha,
            squared_pred=squared_pred,
            smooth=smooth,
            eps=eps,
            lambda_dice=_combined.check_lambda("lambda_dice", lambda_dice),
            lambda_focal=_combined.check_lambda("lambda_focal", lambda_focal),
            focal_include_background=check_bool(
                "focal_include_background", focal_include_background
            ),
            **common,
        )
