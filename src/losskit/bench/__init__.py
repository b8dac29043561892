"""``losskit bench``: forward + backward time and peak memory of the hot losses against torch
eager, ``torch.compile`` of the same formula and the peers (Liger-Kernel, torchvision,
pytorch-metric-learning, torch's own chunked ``linear_cross_entropy``) when importable.

``run(device, case, out_dir)`` prints a Markdown table and writes ``results.md``,
``results.csv`` and ``results.png`` into ``out_dir``.
"""

from .cases import CASES
from .runner import run

__all__ = ["CASES", "run"]
