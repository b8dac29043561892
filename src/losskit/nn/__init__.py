"""``nn.Module`` forms of the losses: validate hyper-parameters in ``__init__``, call the functional."""

from ._base import Loss, WeightedLoss
from .classification import *
from .divergence import *
from .ranking import *
from .regression import *
from .sequence import *
