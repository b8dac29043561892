"""``losskit.lm.causal_lm_loss`` and ``losskit.nn.CausalLMLoss``.

Oracles: Hugging Face's causal-LM loss written out (logits of every position, labels padded with
-100 and shifted, float32 cross entropy, sum / num_items_in_batch) and the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit.reference.linear import causal_lm_loss as ref_causal


def _hf_loss(hidden, weight, labels, num_items=None, bias=None, ignore_index=-100):
    """transformers' ForCausalLMLoss on lm_head(hidden), as it is written there."""
    logits = TF.linear(hidden, weight, bias).float()
    labels = TF.pad(labels, (0, 1), value=ignore_index)[..., 1:].contiguous()
    logits = logits.view(-1, logits.shape[-1])
    reduction = "sum" if num_items is not None else "mean"
    loss = TF.cross_entropy(logits, labels.view(-1), ignore_index=ignore_index, reduction=reduction)
    return loss / num_items if num_items is not None else loss


def _data(b=2, t=9, h=8, v=40, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=g).to(dtype).requires_grad_()
    head = torch.nn.Linear(h, v, bias=False).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :3] = -100  # a prompt
    return hidden, head, labels


@pytest.mark.parametrize("num_items", [None, 11, "tensor"])
def test_matches_hugging_face_loss_and_gradients(num_items):
    hidden, head, labels = _data()
    if num_items == "tensor":
        num_items = torch.tensor(11)
    ours = losskit.lm.causal_lm_loss(
        hidden, head.weight, labels, num_items_in_batch=num_items, chunk_bytes=1000
    )
    theirs = _hf_loss(hidden, head.weight, labels, num_items)
    torch.testing.assert_close(ours, theirs)
    ga = torch.autograd.grad(ours, [hidden, head.weight])
    gb = torch.autograd.grad(theirs, [hidden, head.weight])
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b)


def test_options_match_the_numpy_reference():
    hidden, head, labels = _data(dtype=torch.float64)
    bias = torch.randn(40, dtype=torch.float64)
    kw = {"softcap": 3.0, "logit_scale": 0.7, "z_loss": 1e-3, "label_smoothing": 0.1}
    for reduction in ("mean", "sum", "none"):
        ours = losskit.lm.causal_lm_loss(
            hidden, head.weight, labels, lm_head_bias=bias, reduction=reduction, **kw
        )
        expected = ref_causal(
            hidden.detach().numpy(), head.weight.detach().numpy(), labels.numpy(),
            lm_head_bias=bias.numpy(), reduction=reduction, **kw,
        )  # fmt: skip
        assert ours.shape == expected.shape == ((2, 8) if reduction == "none" else ())
        np.testing.assert_allclose(ours.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_hidden_states_give_a_float32_loss(dtype):
    hidden, head, labels = _data(dtype=dtype)
    ours = losskit.lm.causal_lm_loss(hidden, head.weight, labels)
    assert ours.dtype == torch.float32
    theirs = _hf_loss(hidden, head.weight, labels)  # HF upcasts the logits, then CE in float32
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_shift_false_takes_aligned_labels():
    hidden, head, labels = _data()
    shifted = TF.pad(labels[..., 1:], (0, 1), value=-100)
    a = losskit.lm.causal_lm_loss(hidden, head.weight, labels)
    b = losskit.lm.causal_lm_loss(hidden, head.weight, shifted, shift=False)
    torch.testing.assert_close(a, b)


def test_module_wraps_the_models_head_without_a_new_weight():
    hidden, head, labels = _data()
    head.bias = torch.nn.Parameter(torch.randn(40))
    crit = losskit.nn.CausalLMLoss(head, z_loss=0.0)
    assert list(crit.parameters()) == [] and crit.state_dict() == {}
    assert crit.head is head
    out = crit(hidden, labels, num_items_in_batch=5)
    torch.testing.assert_close(out, _hf_loss(hidden, head.weight, labels, 5, bias=head.bias))
    out.backward()
    assert head.weight.grad is not None and head.bias.grad is not None
    # A tied embedding (V, H) and a bare weight work the same way.
    emb = torch.nn.Embedding(40, 8)
    tied = losskit.nn.CausalLMLoss(emb)(hidden, labels)
    torch.testing.assert_close(tied, _hf_loss(hidden, emb.weight, labels))
    bare = losskit.nn.CausalLMLoss(emb.weight)(hidden, labels)
    torch.testing.assert_close(bare, tied)


def test_module_on_a_model_keeps_one_copy_of_the_head():
    model = torch.nn.Module()
    model.lm_head = torch.nn.Linear(8, 40, bias=False)
    model.loss = losskit.nn.CausalLMLoss(model.lm_head)
    assert list(model.state_dict()) == ["lm_head.weight"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, "'avg' is not a valid value for reduction"),
        ({"z_loss": -1.0}, ValueError, "z_loss"),
        ({"softcap": 0.0}, ValueError, "softcap"),
        ({"shift": "yes"}, TypeError, "shift must be a bool"),
    ],
)
def test_module_constructor_validates(kwargs, error, match):
    with pytest.raises(error, match=match):
        losskit.nn.CausalLMLoss(torch.nn.Linear(4, 5), **kwargs)
    with pytest.raises(TypeError, match="head must be"):
        losskit.nn.CausalLMLoss(torch.nn.Conv1d(4, 5, 1))
