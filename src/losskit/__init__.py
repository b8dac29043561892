"""losskit: loss functions for PyTorch.

The functional API is flat, like ``torch.nn.functional``::

    import losskit
    loss = losskit.cross_entropy(logits, target, label_smoothing=0.1)

Module forms live in :mod:`losskit.nn`, NumPy references in :mod:`losskit.reference`. The families:
:mod:`losskit.lm` (the LM head and post-training losses), :mod:`losskit.contrastive`,
:mod:`losskit.metric` (metric learning, retrieval metrics), :mod:`losskit.segmentation`,
:mod:`losskit.detection` and :mod:`losskit.boxes`, :mod:`losskit.gan`, :mod:`losskit.multitask`
(loss weighting and gradient aggregation). ``losskit.use_backend`` pins a backend (see
``losskit._dispatch``).
"""

from . import (
    boxes,
    contrastive,
    distributed,
    gan,
    kernels,
    lm,
    metric,
    multitask,
    nn,
    reference,
    segmentation,
)
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
