"""Registry entries (samples, bad inputs, tolerances) of the built-in losses, one module per family."""

from . import (
    boxes,
    classification,
    contrastive,
    detection,
    distillation,
    divergence,
    focal,
    gan,
    linear,
    lm_posttraining,
    metric,
    metric_extra,
    ranking,
    regression,
    segmentation,
    sequence,
    surrogate,
)
