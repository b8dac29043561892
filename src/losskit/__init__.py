"""losskit: loss functions for PyTorch.

The functional API is flat, like ``torch.nn.functional``::

    import losskit
    loss = losskit.cross_entropy(logits, target, label_smoothing=0.1)

Module forms live in :mod:`losskit.nn`, NumPy references in :mod:`losskit.reference`; GAN and
box losses in :mod:`losskit.gan` and :mod:`losskit.boxes`; metric learning in
:mod:`losskit.metric`; multi-task weighting in :mod:`losskit.multitask`.
"""

from . import boxes, distributed, gan, kernels, metric, multitask, nn, reference
from . import segmentation
from . import contrastive
from . import lm
from ._checks import get_checks, set_checks
from ._dispatch import BackendUnsupportedError, get_backend, use_backend
from ._reduction import REDUCTIONS
from .classification import *
from .custom import *
from .detection import *
from .distillation import *
from .divergence import *
from .focal import *
from .linear import *
from .ranking import *
from .regression import *
from .sequence import *
from .surrogate import *

__version__ = "0.1.0"

# Modules carry the argument documentation of the functional they wrap (help(), the docs site).
from .nn._docs import document_all as _document_modules

_document_modules()
