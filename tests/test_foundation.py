"""The shared machinery: reduction names, the check switch, Module buffers, dtype handling."""

from __future__ import annotations

import pytest
import torch

import losskit
from losskit import nn as lnn


def test_reduction_names_are_validated_with_the_list_of_valid_ones():
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction.*'none'"):
        lnn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"None is not a valid value for reduction"):
        losskit.mse_loss(torch.zeros(2), torch.zeros(2), reduction=None)


def test_value_checks_can_be_switched_off_and_back_on():
    x = torch.tensor([0.5, 1.5])  # not a probability
    y = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        losskit.binary_cross_entropy(x, y)
    try:
        losskit.set_checks("shapes")
        assert losskit.get_checks() == "shapes"
        # losskit's own value check is skipped; on the CPU torch's op still rejects the value
        # (the same ValueError) ...
        with pytest.raises(ValueError, match="between 0 and 1"):
            losskit.binary_cross_entropy(x, y, reduction="none")
        # ... where no op checks, nothing does: a blank inside a CTC target is not read.
        lp = torch.randn(5, 1, 4).log_softmax(2)
        assert torch.isfinite(losskit.ctc_loss(lp, torch.tensor([[1, 0]]), (5,), (2,)))
        # Shape checks still run.
        with pytest.raises(ValueError, match="target size"):
            losskit.binary_cross_entropy(x, y[:1])
    finally:
        losskit.set_checks("all")
    with pytest.raises(ValueError, match="set_checks"):
        losskit.set_checks("none")


def test_weight_buffers_move_with_the_module_and_are_saved():
    w = torch.tensor([1.0, 2.0, 3.0])
    crit = lnn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert "weight" in crit.state_dict()
    crit = crit.to(torch.float64)
    assert crit.weight.dtype == torch.float64
    bce = lnn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    assert set(bce.state_dict()) == {"pos_weight"}
    fresh = lnn.BCEWithLogitsLoss(pos_weight=torch.tensor([0.0]))
    fresh.load_state_dict(bce.state_dict())
    assert fresh.pos_weight.item() == 2.0


def test_half_precision_inputs_return_their_dtype_and_stay_finite_at_large_logits():
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([[1e4, -1e4, 0.0]], dtype=dtype, requires_grad=True)
        out = losskit.cross_entropy(x, torch.tensor([1]), label_smoothing=0.1)
        out.backward()
        assert out.dtype == dtype
        assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_cross_entropy_k_dimensional_equals_flattened_2d():
    # Independent oracle: the (N, C, H, W) loss equals the (N*H*W, C) loss on permuted logits.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 4, 5), generator=g)
    flat = torch.nn.functional.cross_entropy(x.permute(0, 2, 3, 1).reshape(-1, 3), t.reshape(-1))
    torch.testing.assert_close(losskit.cross_entropy(x, t), flat)


def test_class_index_out_of_range_names_the_index_and_the_class_count():
    with pytest.raises(
        IndexError, match=r"Target 5 is out of bounds: class indices must be in \[0, 3\)"
    ):
        losskit.nll_loss(torch.zeros(2, 3), torch.tensor([0, 5]))
