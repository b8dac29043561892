"""Segmentation losses under one contract (see :mod:`losskit.segmentation._contract`).

Every loss takes logits ``(N, C, d1, ..., dK)`` and a target of class indices ``(N, d1, ..., dK)``
or probabilities of the input's shape; ``activation`` runs before anything is masked,
``ignore_index`` removes pixels from every sum, ``include_background=False`` drops channel 0,
``weight`` has one entry per input channel, and ``"mean"`` is the mean over classes of per-class
scores, per image (or over the batch with ``batch_dice=True``), accumulated in float32.
"""

from .boundary import boundary_loss, signed_distance_map
from .combined import dice_ce_loss, dice_focal_loss
from .dice import dice_loss, generalized_dice_loss, jaccard_loss
from .lovasz import lovasz_hinge_loss, lovasz_softmax_loss
from .tversky import focal_tversky_loss, tversky_loss

__all__ = [
    "boundary_loss",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "signed_distance_map",
    "tversky_loss",
]
