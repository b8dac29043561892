"""losskit: loss functions for PyTorch.

The functional API is flat, like ``torch.nn.functional``::

    import losskit
    loss = losskit.cross_entropy(logits, target, label_smoothing=0.1)

Module forms live in :mod:`losskit.nn`, NumPy references in :mod:`losskit.reference`.
"""

from . import nn, reference
from ._checks import get_checks, set_checks
from ._reduction import REDUCTIONS
from .classification import *
from .divergence import *
from .ranking import *
from .regression import *
from .sequence import *

__version__ = "0.1.0"
