"""Registry entries (sample inputs, bad inputs, tolerances) of the built-in losses, one module per family."""

from . import classification, divergence, ranking, regression, sequence
