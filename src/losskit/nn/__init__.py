"""``nn.Module`` forms of the losses: validate hyper-parameters in ``__init__``, call the functional."""

from ._base import Loss, WeightedLoss
from .boxes import *
from .classification import *
from .contrastive import *
from .detection import *
from .distillation import *
from .divergence import *
from .focal import *
from .gan import *
from .linear import *
from .lm_posttraining import *
from .metric import *
from .metric_extra import *
from .perceptual import *
from .ranking import *
from .regression import *
from .segmentation import *
from .sequence import *
from .surrogate import *
