"""``losskit demo``: real models on real data (scikit-learn's digits) trained with losskit's losses.

Part 1 trains an embedding network with the batch-hard triplet loss on P×K batches and reports
recall@1 on the held-out split. Part 2 trains one trunk with a digit head and an ink-mass head under
equal weighting, uncertainty weighting and dynamic task prioritisation (with focal loss). Plots go to
``--out``.
"""

from __future__ import annotations

from .runner import DemoConfig, run

__all__ = ["DemoConfig", "run"]
