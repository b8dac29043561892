"""Kernel tests run on the CPU through Triton's interpreter.

``TRITON_INTERPRET`` must be set before ``triton`` is first imported; losskit imports it lazily
(only when a kernel is about to run), so setting it here is early enough. Each test module skips
itself when ``triton`` is not installed.
"""

from __future__ import annotations

import os
import warnings

os.environ["TRITON_INTERPRET"] = "1"

import pytest

from losskit.kernels import use_kernels


@pytest.fixture
def kernels():
    """Force the kernels (on CPU tensors, through the interpreter) inside the test."""
    pytest.importorskip("triton")
    with use_kernels("always"), warnings.catch_warnings():
        # The interpreter evaluates masked-off lanes with NumPy (log 0, inf - inf): harmless.
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.fixture
def pytorch_path():
    with use_kernels("never"):
        yield
