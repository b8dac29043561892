"""Contrastive and representation learning: InfoNCE, SupCon, CLIP and SigLIP, and GradCache.

Every loss works on this rank's ``B_local × B_global`` block of the similarity matrix and, given
a process group, returns the global loss on every rank with the gradient convention of
:mod:`losskit.distributed` (after DDP averaging, every rank holds the single-process gradient
on the concatenated batch). Every loss takes ``chunk_size=`` to compute the loss and its
gradient block by block (``chunk_size`` rows against every column, recomputed in the backward),
never holding the matrix, so the batch size is bounded by the embeddings, not by ``B²``.
:func:`cached_contrastive_step` (GradCache) handles batches whose *encoders* do not fit.
The Module forms (:class:`ClipLoss`, :class:`SigLipLoss` with a learnable ``logit_scale``,
:class:`InfoNCELoss`, :class:`SupConLoss`) live in :mod:`losskit.nn` and are re-exported here.

Example:
    >>> img, txt = torch.randn(16, 32), torch.randn(16, 32)
    >>> crit = losskit.contrastive.ClipLoss()  # owns logit_scale = log(1 / 0.07)
    >>> crit(img, txt).backward()
"""

from __future__ import annotations

from typing import Any

from .clip import clip_loss
from .gradcache import cached_contrastive_step
from .info_nce import info_nce_loss
from .siglip import SIGLIP_DISTRIBUTED, siglip_loss
from .supcon import CONTRAST_MODES, supcon_loss

# The Module classes subclass losskit.nn's base, whose package imports this one: resolve lazily.
_MODULES = ("ClipLoss", "InfoNCELoss", "SigLipLoss", "SupConLoss")

__all__ = [
    "CONTRAST_MODES",
    "SIGLIP_DISTRIBUTED",
    "cached_contrastive_step",
    "clip_loss",
    "info_nce_loss",
    "siglip_loss",
    "supcon_loss",
    *_MODULES,
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        from ..nn import contrastive as nn_contrastive

        return getattr(nn_contrastive, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
