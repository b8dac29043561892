"""Independent NumPy (float64) references of every loss: the formula written plainly.

Each function mirrors the functional signature one to one (NumPy arrays in, NumPy out) and never
calls torch. They are the test oracle and the documentation a reader can trust.
"""

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
from .multitask import *
from .ranking import *
from .regression import *
from .segmentation import *
from .sequence import *
from .surrogate import *
