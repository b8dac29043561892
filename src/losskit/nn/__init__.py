"""``nn.Module`` forms of the losses: validate hyper-parameters in ``__init__``, call the functional."""

from ._base import Loss, WeightedLoss
from .classification import *  # noqa: F403
from .divergence import *  # noqa: F403
from .ranking import *  # noqa: F403
from .regression import *  # noqa: F403
from .sequence import *  # noqa: F403
