"""Multi-task loss weighting: turn one loss per task into the scalar a shared model trains on.

Every strategy is an ``nn.Module`` with the same interface::

    total = strategy(losses)   # losses: list/tuple or dict of scalar tensors, or a 1-D tensor
    strategy.weights           # current per-task multipliers, a detached (T,) tensor

Strategies: :class:`EqualWeighting` (and :class:`SumWeighting`, :class:`MeanWeighting`),
:class:`UncertaintyWeighting` (Kendall et al. 2018), :class:`DynamicTaskPrioritization`
(Guo et al. 2018), :class:`DynamicWeightAverage` (Liu et al. 2019), :class:`GradNorm`
(Chen et al. 2018), :class:`RandomLossWeighting` (Lin et al. 2021), :class:`GeometricMeanLoss`,
:class:`FAMO` (Liu et al. 2023) and :class:`STCH` (Lin et al. 2024).

Gradient aggregators (PCGrad, CAGrad, MGDA, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad, GradVac,
GradDrop) combine the tasks' gradients rather than their losses: see
:mod:`losskit.multitask.aggregators`.
"""

from .base import MultiTaskWeighting, TaskLosses
from .dtp import DynamicTaskPrioritization
from .dwa import DynamicWeightAverage
from .equal import EqualWeighting, MeanWeighting, SumWeighting
from .famo import FAMO
from .geometric import GeometricMeanLoss
from .gradnorm import GradNorm
from .rlw import RandomLossWeighting
from .stch import STCH
from .uncertainty import UncertaintyWeighting

# Plain sorted order (tests/test_multitask_common.py checks it), not ruff's isort-style one.
__all__ = [  # noqa: RUF022
    "DynamicTaskPrioritization",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FAMO",
    "GeometricMeanLoss",
    "GradNorm",
    "MeanWeighting",
    "MultiTaskWeighting",
    "RandomLossWeighting",
    "STCH",
    "SumWeighting",
    "TaskLosses",
    "UncertaintyWeighting",
]
