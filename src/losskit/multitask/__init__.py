"""Multi-task loss weighting: turn one loss per task into the scalar a shared model trains on.

Every strategy is an ``nn.Module`` with the same interface::

    total = strategy(losses)   # losses: list/tuple or dict of scalar tensors, or a 1-D tensor
    strategy.weights           # current per-task multipliers, a detached (T,) tensor

Strategies: :class:`EqualWeighting` (and :class:`SumWeighting`, :class:`MeanWeighting`),
:class:`UncertaintyWeighting` (Kendall et al. 2018), :class:`DynamicTaskPrioritization`
(Guo et al. 2018), :class:`DynamicWeightAverage` (Liu et al. 2019), :class:`GradNorm`
(Chen et al. 2018), :class:`RandomLossWeighting` (Lin et al. 2021) and :class:`GeometricMeanLoss`.
"""

from .base import MultiTaskWeighting, TaskLosses
from .dtp import DynamicTaskPrioritization
from .dwa import DynamicWeightAverage
from .equal import EqualWeighting, MeanWeighting, SumWeighting
from .geometric import GeometricMeanLoss
from .gradnorm import GradNorm
from .rlw import RandomLossWeighting
from .uncertainty import UncertaintyWeighting

__all__ = [
    "DynamicTaskPrioritization",
    "DynamicWeightAverage",
    "EqualWeighting",
    "GeometricMeanLoss",
    "GradNorm",
    "MeanWeighting",
    "MultiTaskWeighting",
    "RandomLossWeighting",
    "SumWeighting",
    "TaskLosses",
    "UncertaintyWeighting",
]
