"""Metric learning: distances, online miners, triplet and pair losses, P×K sampling, margin softmax.

Functional losses take ``(embeddings, labels)`` (``(B, D)`` floating, ``(B,)`` integer labels);
miners return index tuples; :class:`PKSampler` builds the batches they need. The Module forms
(:class:`TripletLoss`, :class:`ContrastiveLoss`, :class:`MultiSimilarityLoss`,
:class:`ArcFaceLoss`, :class:`CosFaceLoss`) live in :mod:`losskit.nn` and are re-exported here.

Example:
    >>> from losskit.metric import PKSampler, triplet_loss
    >>> model, images = torch.nn.Linear(64, 16), torch.randn(32, 64)
    >>> labels = torch.arange(8).repeat_interleave(4)  # 8 identities x 4 samples
    >>> loss = triplet_loss(model(images), labels, margin=0.3, mining="batch_hard")
"""

from __future__ import annotations

from typing import Any

from .circle import circle_loss
from .distances import pairwise_distance_matrix
from .lifted import LIFTED_FORMS, lifted_structure_loss
from .margin_softmax import arcface_loss, cosface_loss
from .miners import (
    PAIR_STRATEGIES,
    Pairs,
    Triplets,
    batch_all_triplets,
    batch_hard_triplets,
    mine_pairs,
    semi_hard_triplets,
)
from .npairs import n_pairs_loss
from .pairs import contrastive_loss, multi_similarity_loss
from .proxies import proxy_anchor_loss, sub_center_arcface_loss
from .retrieval import (
    mean_average_precision_at_r,
    precision_at_1,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)
from .samplers import PKSampler
from .triplet import MININGS, triplet_loss

# The Module classes subclass losskit.nn's base, whose package imports this one: resolve them
# lazily so that neither import order creates a cycle.
_MODULES = ("ArcFaceLoss", "ContrastiveLoss", "CosFaceLoss", "MultiSimilarityLoss", "TripletLoss")
_EXTRA_MODULES = (
    "CircleLoss",
    "LiftedStructureLoss",
    "NPairsLoss",
    "ProxyAnchorLoss",
    "SubCenterArcFaceLoss",
)

__all__ = [
    "MININGS",
    "PAIR_STRATEGIES",
    "PKSampler",
    "Pairs",
    "Triplets",
    "arcface_loss",
    "batch_all_triplets",
    "batch_hard_triplets",
    "contrastive_loss",
    "cosface_loss",
    "mine_pairs",
    "multi_similarity_loss",
    "pairwise_distance_matrix",
    "semi_hard_triplets",
    "triplet_loss",
    *_MODULES,
    "LIFTED_FORMS",
    "circle_loss",
    "lifted_structure_loss",
    "mean_average_precision_at_r",
    "n_pairs_loss",
    "precision_at_1",
    "proxy_anchor_loss",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
    "sub_center_arcface_loss",
    *_EXTRA_MODULES,
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        from ..nn import metric as nn_metric

        return getattr(nn_metric, name)
    if name in _EXTRA_MODULES:
        from ..nn import metric_extra

        return getattr(metric_extra, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
