"""Registry entries (samples, bad inputs, tolerances) of the built-in losses, one module per family."""

from . import (
    boxes,
    classification,
    detection,
    distillation,
    divergence,
    focal,
    gan,
    linear,
    metric,
    metric_extra,
    ranking,
    regression,
    segmentation,
    sequence,
    surrogate,
)
from . import contrastive
from . import lm_posttraining
