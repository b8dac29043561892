"""Module forms of the contrastive losses (:mod:`losskit.contrastive`).

``ClipLoss`` and ``SigLipLoss`` own the learnable temperature as ``logit_scale`` (log space, a
0-d ``nn.Parameter``, like open_clip's models) and ``SigLipLoss`` the learnable ``logit_bias``:
put the criterion's parameters in the optimizer next to the model's. Before each use the log
scale is clamped in place to ``[0, log(max_logit_scale)]`` (open_clip clamps it after every
optimizer step; CLIP caps the scale at 100), so the scale cannot run away and its gradient
stays alive at the cap.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from .._checks import check_bool, check_number
from ..contrastive import clip as C
from ..contrastive import info_nce as I
from ..contrastive import siglip as S
from ..contrastive import supcon as SC
from ..contrastive._common import check_chunk_size, check_group, check_temperature
from ._base import Loss

__all__ = ["ClipLoss", "InfoNCELoss", "SigLipLoss", "SupConLoss"]


def _finite(name: str, value: object) -> float:
    v = check_number(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


class _LearnedScale(Loss):
    """A learnable log scale, clamped in place to ``[0, log(max_logit_scale)]`` before use."""

    def __init__(self, init_logit_scale: float, max_logit_scale: float, reduction: str) -> None:
        super().__init__(reduction)
        self.max_logit_scale = check_temperature("max_logit_scale", max_logit_scale)
        if self.max_logit_scale < 1.0:
            raise ValueError(f"max_logit_scale must be >= 1, got {max_logit_scale!r}")
        init = _finite("init_logit_scale", init_logit_scale)
        if not 0.0 <= init <= math.log(self.max_logit_scale):
            raise ValueError(
                f"init_logit_scale (log space) must be in [0, log(max_logit_scale)] = "
                f"[0, {math.log(self.max_logit_scale):.4g}], got {init_logit_scale!r}"
            )
        self.logit_scale = nn.Parameter(torch.tensor(init))

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` after the in-place clamp (what the loss multiplies by)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))
        return self.logit_scale.exp()


class ClipLoss(_LearnedScale):
    """CLIP's loss (:func:`losskit.contrastive.clip_loss`) with a learnable temperature.

    ``logit_scale`` starts at ``log(1 / 0.07)`` (CLIP's init); ``init_logit_bias`` adds a
    learnable bias (open_clip's ``init_logit_bias``), ``None`` for none.
    ``forward(image_features, text_features)``.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.07),
        max_logit_scale: float = 100.0,
        init_logit_bias: float | None = None,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        group: dist.ProcessGroup | None = None,
        chunk_size: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(init_logit_scale, max_logit_scale, reduction)
        self.logit_bias = None
        if init_logit_bias is not None:
            self.logit_bias = nn.Parameter(
                torch.tensor(_finite("init_logit_bias", init_logit_bias))
            )
        self.local_loss = check_bool("local_loss", local_loss)
        self.gather_with_grad = check_bool("gather_with_grad", gather_with_grad)
        check_group(group)
        self.group = group
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return C.clip_loss(
            image_features,
            text_features,
            self.scale(),
            logit_bias=self.logit_bias,
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
            group=self.group,
            chunk_size=self.chunk_size,
            reduction=self.reduction,
        )


class SigLipLoss(_LearnedScale):
    """SigLIP's loss (:func:`losskit.contrastive.siglip_loss`) with a learnable scale and bias.

    The paper's init: :math:`t' = \\log 10` (scale 10) and :math:`b = -10`.
    ``forward(image_features, text_features)``.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        max_logit_scale: float = 100.0,
        distributed: str = "all_gather",
        group: dist.ProcessGroup | None = None,
        chunk_size: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(init_logit_scale, max_logit_scale, reduction)
        self.logit_bias = nn.Parameter(torch.tensor(_finite("init_logit_bias", init_logit_bias)))
        if not isinstance(distributed, str) or distributed not in S.SIGLIP_DISTRIBUTED:
            raise ValueError(
                f"distributed must be one of {S.SIGLIP_DISTRIBUTED}, got {distributed!r}"
            )
        self.distributed = distributed
        check_group(group)
        self.group = group
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return S.siglip_loss(
            image_features,
            text_features,
            self.scale(),
            self.logit_bias,
            distributed=self.distributed,
            group=self.group,
            chunk_size=self.chunk_size,
            reduction=self.reduction,
        )


class InfoNCELoss(Loss):
    """Module form of :func:`losskit.contrastive.info_nce_loss`;
    ``forward(query, key, negatives=None, labels=None)``."""

    def __init__(
        self,
        temperature: float = 0.07,
        symmetric: bool = False,
        normalize: bool = True,
        group: dist.ProcessGroup | None = None,
        chunk_size: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.temperature = check_temperature("temperature", temperature)
        self.symmetric = check_bool("symmetric", symmetric)
        self.normalize = check_bool("normalize", normalize)
        check_group(group)
        self.group = group
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        negatives: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return I.info_nce_loss(
            query,
            key,
            temperature=self.temperature,
            negatives=negatives,
            symmetric=self.symmetric,
            labels=labels,
            normalize=self.normalize,
            group=self.group,
            chunk_size=self.chunk_size,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}, {super().extra_repr()}"


class SupConLoss(Loss):
    """Module form of :func:`losskit.contrastive.supcon_loss`; ``forward(features, labels=None)``."""

    def __init__(
        self,
        temperature: float = 0.1,
        base_temperature: float = 0.07,
        contrast_mode: str = "all",
        normalize: bool = True,
        group: dist.ProcessGroup | None = None,
        chunk_size: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.temperature = check_temperature("temperature", temperature)
        self.base_temperature = check_temperature("base_temperature", base_temperature)
        if not isinstance(contrast_mode, str) or contrast_mode not in SC.CONTRAST_MODES:
            raise ValueError(
                f"contrast_mode must be one of {SC.CONTRAST_MODES}, got {contrast_mode!r}"
            )
        self.contrast_mode = contrast_mode
        self.normalize = check_bool("normalize", normalize)
        check_group(group)
        self.group = group
        self.chunk_size = check_chunk_size(chunk_size)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return SC.supcon_loss(
            features,
            labels,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            normalize=self.normalize,
            group=self.group,
            chunk_size=self.chunk_size,
            reduction=self.reduction,
        )
