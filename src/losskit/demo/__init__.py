"""``losskit demo``: real models on real data (scikit-learn's digits) trained with losskit's losses.

Part 1 trains an embedding network with the batch-hard triplet loss on P×K batches and reports
recall@1 on the held-out split; part 1b trains one with the proxy-anchor loss and reports the
retrieval metrics of :mod:`losskit.metric.retrieval` (precision@1, R-precision, MAP@R). Part 2
trains one trunk with a digit head and an ink-mass head (in raw units: its loss starts ~150× the
cross entropy) under equal weighting, uncertainty weighting, dynamic task prioritisation (with
focal loss) and two gradient aggregators (IMTL-G, MGDA-UB). Plots go to ``--out``.
"""

from __future__ import annotations

from .runner import DemoConfig, run

__all__ = ["DemoConfig", "run"]
