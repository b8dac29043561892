"""Property-based tests: random shapes and parameters, every loss against its NumPy reference and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from registry_helpers import call_functional, call_reference, call_torch, loss_params

FUZZED = loss_params(where=lambda i: i.random_sample is not None)


@pytest.mark.parametrize("info", FUZZED)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 7),
    c=st.integers(2, 6),
    reduction_index=st.integers(0, 3),
)
def test_random_inputs_match_reference_and_torch(info, seed, n, c, reduction_index):
    reduction = info.reductions[reduction_index % len(info.reductions)]
    sample = info.random_sample(torch.Generator().manual_seed(seed), n, c).with_reduction(reduction)
    ours = call_functional(info, sample).detach().numpy()
    rtol, atol = info.tolerance(torch.float64)
    np.testing.assert_allclose(ours, call_reference(info, sample), rtol=rtol, atol=atol)
    if info.torch_functional is not None and sample.torch_kwargs is not None:
        theirs = call_torch(info, sample).detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
