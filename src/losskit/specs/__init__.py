"""Registry entries (samples, bad inputs, tolerances) of the built-in losses, one module per family."""

from . import (
    boxes,
    classification,
    divergence,
    focal,
    gan,
    metric,
    ranking,
    regression,
    sequence,
    surrogate,
)
