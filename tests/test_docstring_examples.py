"""Every ``>>>`` example in losskit's docstrings runs (outputs are illustrative, not compared).

Each runs in its module's namespace plus ``torch`` and ``losskit``, as a user reading that
module would have them. The kernels (triton), the demo and the benchmark are left out.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest
import torch

import losskit

_SKIP = ("losskit.kernels.", "losskit.demo", "losskit.bench")


def _examples() -> list:
    params = []
    for info in pkgutil.walk_packages(losskit.__path__, "losskit."):
        if info.name.startswith(_SKIP):
            continue
        module = importlib.import_module(info.name)
        finder = doctest.DocTestFinder(exclude_empty=True)
        for test in finder.find(module, globs={**vars(module), "torch": torch, "losskit": losskit}):
            if test.examples:
                params.append(pytest.param(test, id=test.name))
    return params


@pytest.mark.parametrize("test", _examples())
def test_docstring_example_runs(test):
    namespace = dict(test.globs)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for example in test.examples:
            exec(compile(example.source, f"<{test.name}>", "exec"), namespace)
