"""CTC-specific tests: brute-force alignment enumeration, gradients w.r.t. logits against torch,
the documented gradient difference w.r.t. log_probs, NaN-free edge cases, argument forms.

The generic suite (tests/test_conformance.py) covers values and gradients against the NumPy
reference, gradcheck, error cases and edge values against torch. torch's CTC backward is not the
gradient w.r.t. ``log_probs`` (it is ``exp(log_probs) - posterior``), so gradients are compared
with torch here, after ``log_softmax``, where both are the true gradient w.r.t. the logits.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit import reference as R
from losskit._registry import get
from losskit.sequence import _safe_logsumexp

F64 = torch.float64


def _log_probs(seed: int, *shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).log_softmax(-1).to(dtype)


def _logits(seed: int, *shape: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_(True)


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c for c in merged if c != blank)


def _brute_force_nll(lp: np.ndarray, labels: tuple[int, ...], blank: int) -> float:
    """-log of the summed probability of every path (all C**T of them) that collapses to labels."""
    t_len, classes = lp.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=t_len):
        if _collapse(path, blank) == labels:
            total += float(np.exp(sum(lp[t, c] for t, c in enumerate(path))))
    return -np.log(total) if total > 0 else np.inf


BRUTE_CASES = [
    # (targets per sample, input lengths, blank, C)
    ([(1, 2), (2, 2), ()], (4, 4, 3), 0, 3),
    ([(1, 1, 1), (2,)], (5, 1), 0, 3),  # [1,1,1] needs 5 frames exactly
    ([(0, 2), (2, 0, 2)], (4, 5), 1, 3),  # blank in the middle of the classes
    ([(1, 1), (3,)], (2, 0), 2, 4),  # impossible: too few frames, and no frame at all
]


@pytest.mark.parametrize(("targets", "in_lens", "blank", "classes"), BRUTE_CASES)
def test_values_match_brute_force_enumeration(targets, in_lens, blank, classes):
    t_len, batch = max(in_lens), len(targets)
    lp = _log_probs(0, t_len, batch, classes)
    concat = torch.tensor([c for tg in targets for c in tg], dtype=torch.long)
    tg_lens = tuple(len(tg) for tg in targets)
    ours = losskit.ctc_loss(lp, concat, in_lens, tg_lens, blank=blank, reduction="none")
    expected = [
        _brute_force_nll(lp[: in_lens[n], n].numpy(), targets[n], blank) for n in range(batch)
    ]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)
    # The NumPy reference is the oracle of the generic suite: check it here too.
    ref = R.ctc_loss(lp.numpy(), concat.numpy(), in_lens, tg_lens, blank, "none")
    np.testing.assert_allclose(ref, expected, rtol=1e-10)


GRAD_CASES = [
    pytest.param(
        dict(shape=(7, 3, 5), padded=True, in_lens=(7, 6, 4), tg_lens=(3, 2, 0)), id="padded"
    ),
    pytest.param(
        dict(shape=(6, 3, 4), padded=False, in_lens=(6, 6, 5), tg_lens=(2, 3, 1)), id="concat"
    ),
    pytest.param(
        dict(shape=(6, 2, 4), padded=True, in_lens=(6, 2), tg_lens=(2, 3), zero_infinity=True),
        id="zero_infinity",
    ),
    pytest.param(
        dict(shape=(6, 2, 4), padded=True, in_lens=(6, 5), tg_lens=(3, 2), blank=3), id="blank=3"
    ),
    pytest.param(
        dict(shape=(6, 5), padded=False, in_lens=(6,), tg_lens=(3,), blank=1), id="unbatched"
    ),
]


def _case_args(case: dict, seed: int = 0):
    shape = case["shape"]
    blank = case.get("blank", 0)
    classes = shape[-1]
    batch = 1 if len(shape) == 2 else shape[1]
    g = torch.Generator().manual_seed(seed)
    s = max(case["tg_lens"])
    labels = torch.randint(0, classes - 1, (batch, s), generator=g)
    labels = labels + (labels >= blank).long()
    if case["padded"]:
        targets = labels
    else:
        targets = torch.cat([labels[n, :length] for n, length in enumerate(case["tg_lens"])])
    kwargs = {"blank": blank, "zero_infinity": case.get("zero_infinity", False)}
    return targets, case["in_lens"], case["tg_lens"], kwargs


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", GRAD_CASES)
def test_grad_wrt_logits_matches_torch(case, reduction):
    targets, in_lens, tg_lens, kwargs = _case_args(case)
    for dtype, tol in ((F64, 1e-10), (torch.float32, 1e-5)):
        x = _logits(1, *case["shape"]).detach().to(dtype).requires_grad_(True)
        dim = x.dim() - 1
        ours = losskit.ctc_loss(
            x.log_softmax(dim), targets, in_lens, tg_lens, reduction=reduction, **kwargs
        )
        theirs = TF.ctc_loss(
            x.log_softmax(dim), targets, in_lens, tg_lens, reduction=reduction, **kwargs
        )
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
        up = torch.randn(ours.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
        (g_ours,) = torch.autograd.grad(ours, x, up)
        (g_theirs,) = torch.autograd.grad(theirs, x, up)
        torch.testing.assert_close(g_ours, g_theirs, rtol=tol, atol=tol)


def test_default_grad_is_torchs_and_exact_grad_is_torchs_minus_exp_log_probs():
    """By default losskit's gradient is torch's; with exact_grad=True it is -posterior, where
    torch returns exp(log_probs) - posterior.

    So ``torch_grad - our_grad = exp(log_probs) * grad_out[n]`` on the frames ``t < T_n`` that a
    sample reads, and both are 0 on the others."""
    targets = torch.tensor([[1, 2, 2], [3, 1, 0]])
    in_lens, tg_lens = (6, 4), (3, 2)
    lp = _log_probs(3, 6, 2, 4)
    up = torch.tensor([0.7, -1.3], dtype=F64)
    grads = []
    exact = functools.partial(losskit.ctc_loss, exact_grad=True)
    for fn in (exact, TF.ctc_loss, losskit.ctc_loss):
        x = lp.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x, targets, in_lens, tg_lens, reduction="none"), x, up)
        grads.append(g)
    ours, theirs, default = grads
    torch.testing.assert_close(default, theirs, rtol=1e-10, atol=1e-12)
    frames = (torch.arange(6)[:, None] < torch.tensor(in_lens)[None, :]).to(F64)  # (T, N)
    expected = ours + lp.exp() * (up * frames)[..., None]
    torch.testing.assert_close(theirs, expected, rtol=1e-10, atol=1e-12)
    # Ours is the closed-form -posterior of the alpha-beta reference.
    ref = R.ctc_loss_grad(
        lp.numpy(), targets.numpy(), in_lens, tg_lens, reduction="none", grad_output=up.numpy()
    )
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_safe_logsumexp_all_neg_inf_gives_neg_inf_and_zero_grad():
    x = torch.tensor(
        [
            [float("-inf")] * 3,
            [0.5, float("-inf"), -2.0],
            [1.0, 2.0, 3.0],
            [-1e30, -1e30, float("-inf")],
        ],
        dtype=F64,
        requires_grad=True,
    )
    out = _safe_logsumexp(x, dim=1)
    expected = torch.logsumexp(x.detach(), dim=1)  # torch's value is right; its backward is NaN
    torch.testing.assert_close(out.detach(), expected)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g[0].eq(0).all()
    # Elsewhere the gradient is softmax(x) over the finite entries.
    torch.testing.assert_close(g[1:], torch.softmax(x.detach()[1:], dim=1))


def test_impossible_alignment_is_inf_with_zero_nan_free_grad_under_exact_grad():
    targets = torch.tensor([[1, 1], [1, 2]])
    x = _logits(4, 3, 2, 3)
    loss = losskit.ctc_loss(
        x.log_softmax(2), targets, (2, 3), (2, 2), reduction="none", exact_grad=True
    )
    assert torch.isinf(loss[0]) and torch.isfinite(loss[1])
    (g,) = torch.autograd.grad(loss[0], x, retain_graph=True)
    assert g.eq(0).all()  # torch gives NaN here
    (g,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(g).all()
    # With zero_infinity the impossible sample contributes nothing, as in torch.
    for reduction in ("mean", "sum"):
        kw = {"reduction": reduction, "zero_infinity": True}
        ours = losskit.ctc_loss(x.log_softmax(2), targets, (2, 3), (2, 2), **kw)
        theirs = TF.ctc_loss(x.log_softmax(2), targets, (2, 3), (2, 2), **kw)
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(
            torch.autograd.grad(ours, x)[0], torch.autograd.grad(theirs, x)[0]
        )


def test_neg_inf_log_probs_give_finite_grad():
    # A class masked out with -inf (never in the targets): finite loss, no NaN anywhere.
    lp = torch.cat([_log_probs(5, 5, 2, 3), torch.full((5, 2, 1), float("-inf"), dtype=F64)], 2)
    targets, in_lens, tg_lens = torch.tensor([[1, 2], [2, 2]]), (5, 5), (2, 2)
    x = lp.clone().requires_grad_(True)
    loss = losskit.ctc_loss(x, targets, in_lens, tg_lens, reduction="sum", exact_grad=True)
    torch.testing.assert_close(loss, TF.ctc_loss(lp, targets, in_lens, tg_lens, reduction="sum"))
    (g,) = torch.autograd.grad(loss, x)
    ref = R.ctc_loss_grad(lp.numpy(), targets.numpy(), in_lens, tg_lens, reduction="sum")
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_empty_batch_mean_is_nan_sum_is_zero():
    # torch raises for an empty log_probs; losskit follows its empty-batch convention instead.
    x = torch.zeros(4, 0, 3, dtype=F64, requires_grad=True)
    targets = torch.zeros(0, 2, dtype=torch.long)
    assert losskit.ctc_loss(x, targets, (), (), reduction="none").shape == (0,)
    assert torch.isnan(losskit.ctc_loss(x, targets, (), (), reduction="mean"))
    total = losskit.ctc_loss(x, targets, (), (), reduction="sum")
    assert total.item() == 0.0
    total.backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_zero_input_lengths_backward_works():
    x = _logits(6, 3, 2, 3)
    loss = losskit.ctc_loss(
        x.log_softmax(2), torch.tensor([1, 2]), (0, 0), (0, 2), reduction="none"
    )
    np.testing.assert_array_equal(loss.detach().numpy(), [0.0, np.inf])
    (g,) = torch.autograd.grad(loss[0], x)
    assert g.eq(0).all()


def test_length_and_target_forms_agree_with_torch():
    lp = _log_probs(7, 6, 3, 5)
    padded = torch.tensor([[1, 2, 3], [4, 4, 0], [2, 0, 0]])
    concat = torch.tensor([1, 2, 3, 4, 4, 2])
    in_lens, tg_lens = (6, 5, 4), (3, 2, 1)
    expected = TF.ctc_loss(lp, padded, in_lens, tg_lens, reduction="none")
    forms = [
        (padded, in_lens, tg_lens),
        (padded.int(), list(in_lens), list(tg_lens)),
        (concat, torch.tensor(in_lens), torch.tensor(tg_lens, dtype=torch.int32)),
        (concat.to(torch.int16), torch.tensor(in_lens, dtype=torch.uint8), tg_lens),
        (torch.cat([padded, torch.full((3, 2), -1)], 1), in_lens, tg_lens),  # wider padding
    ]
    for targets, il, tl in forms:
        torch.testing.assert_close(
            losskit.ctc_loss(lp, targets, il, tl, reduction="none"), expected
        )


def test_unbatched_forms_agree_with_batch_of_one():
    lp = _log_probs(8, 6, 4)
    tg = torch.tensor([1, 3, 3])
    batched = losskit.ctc_loss(lp.unsqueeze(1), tg.unsqueeze(0), (6,), (3,), reduction="none")
    for targets, il, tl in [(tg, torch.tensor(6), torch.tensor(3)), (tg.unsqueeze(0), [6], [3])]:
        out = losskit.ctc_loss(lp, targets, il, tl, reduction="none")
        assert out.shape == ()
        torch.testing.assert_close(out, batched[0])
        torch.testing.assert_close(losskit.ctc_loss(lp, targets, il, tl), batched[0] / 3)


def test_shapes_check_level_skips_label_value_checks():
    lp = _log_probs(9, 5, 1, 4)
    bad = torch.tensor([[1, 0]])  # holds the blank
    with pytest.raises(ValueError, match="blank index 0"):
        losskit.ctc_loss(lp, bad, (5,), (2,))
    losskit.set_checks("shapes")
    try:
        assert torch.isfinite(losskit.ctc_loss(lp, bad, (5,), (2,)))
    finally:
        losskit.set_checks("all")


def test_module_validates_in_constructor_and_reprs():
    with pytest.raises(ValueError, match="blank=-2"):
        losskit.nn.CTCLoss(blank=-2)
    with pytest.raises(ValueError, match="'avg' is not a valid value"):
        losskit.nn.CTCLoss(reduction="avg")
    crit = losskit.nn.CTCLoss(blank=2, zero_infinity=True)
    assert "blank=2" in repr(crit) and "zero_infinity=True" in repr(crit)


@given(seed=st.integers(0, 2**16), n=st.integers(1, 4), c=st.integers(2, 6))
def test_random_samples_match_torch_values_and_logit_grads(seed, n, c):
    sample = get("ctc_loss").random_sample(torch.Generator().manual_seed(seed), n, c)
    lp, targets, in_lens, tg_lens = sample.args
    logits = (
        lp.detach().clone().requires_grad_(True)
    )  # log_softmax(log_softmax(z)) = log_softmax(z)
    for reduction in ("none", "mean", "sum"):
        kw = {**sample.kwargs, "reduction": reduction}
        ours = losskit.ctc_loss(logits.log_softmax(2), targets, in_lens, tg_lens, **kw)
        theirs = TF.ctc_loss(logits.log_softmax(2), targets, in_lens, tg_lens, **kw)
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
        up = torch.randn(ours.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        torch.testing.assert_close(
            torch.autograd.grad(ours, logits, up)[0],
            torch.autograd.grad(theirs, logits, up)[0],
            rtol=1e-9,
            atol=1e-10,
        )
