"""Gradient aggregators for multi-task learning: combine the tasks' gradients, not their losses.

``aggregator.backward(losses, shared_parameters)`` replaces ``total.backward()``; see
:class:`GradientAggregator` for the interface, memory, DDP and AMP recipes.

Gramian methods (hold at most ``max_gradients`` full per-task gradients, default 2):
:class:`MGDA` (and MGDA-UB with ``shared_representation=``), :class:`PCGrad`, :class:`CAGrad`,
:class:`IMTLG`, :class:`NashMTL`, :class:`AlignedMTL`, :class:`UPGrad`, :class:`GradVac`.
Coordinate-wise (keeps every task gradient): :class:`GradDrop`.
"""

from .aligned import AlignedMTL
from .base import GradientAggregator
from .cagrad import CAGrad
from .graddrop import GradDrop
from .gradvac import GradVac
from .imtl import IMTLG
from .mgda import MGDA
from .nashmtl import NashMTL
from .pcgrad import PCGrad
from .upgrad import UPGrad

__all__ = [
    "IMTLG",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "GradDrop",
    "GradVac",
    "GradientAggregator",
    "NashMTL",
    "PCGrad",
    "UPGrad",
]
