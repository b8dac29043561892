"""The seam as the torch mirrors use it: backends declared, torch's op by default, checks that
cost nothing (thread-local, skipped while compiling), errors reworded, and whole-graph compiles.

The oracles: torch's own functionals (values, gradients, errors) and eager execution (compiles).
"""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit._checks import value_checks_enabled
from losskit._registry import get

# The torch mirrors of this layer, and the backend ``auto`` picks for them on the CPU.
MIRRORS = {
    "l1_loss": "torch",
    "mse_loss": "torch",
    "smooth_l1_loss": "torch",
    "huber_loss": "torch",
    "cross_entropy": "torch",
    "nll_loss": "torch",
    "binary_cross_entropy": "torch",
    "binary_cross_entropy_with_logits": "torch",
    "kl_div": "torch",
    "poisson_nll_loss": "torch",
    "gaussian_nll_loss": "torch",
    "margin_ranking_loss": "torch",
    "hinge_embedding_loss": "torch",
    "soft_margin_loss": "formula",  # finite where torch overflows, and as fast on the CPU
    "multi_margin_loss": "torch",
    "multilabel_margin_loss": "torch",
    "multilabel_soft_margin_loss": "torch",
    "cosine_embedding_loss": "torch",
    "triplet_margin_loss": "torch",
    "triplet_margin_with_distance_loss": "torch",
    "ctc_loss": "torch",
}
KERNELS = {"cross_entropy", "binary_cross_entropy_with_logits", "kl_div"}


def _sample(name: str):
    """The loss's first registry sample, without ctc's ``exact_grad`` (so the default runs)."""
    info = get(name)
    s = next(iter(info.samples(torch.Generator().manual_seed(0))))
    kwargs = {k: v for k, v in s.kwargs.items() if k != "exact_grad"}
    return info, type(s)(args=s.args, kwargs=kwargs, desc=s.desc)


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_every_mirror_declares_torch_and_its_kernel(name):
    info = get(name)
    record = info.dispatch_record
    assert record is not None and record is getattr(losskit, name).backends
    assert "torch" in record.names
    assert ("kernel" in record.names) == (name in KERNELS)


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_auto_picks_the_declared_default_and_it_matches_the_pinned_backend(name):
    info, sample = _sample(name)
    args = [
        a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
        for a in sample.args
    ]
    out = info.functional(*args, **sample.kwargs)
    with losskit.use_backend(MIRRORS[name]):
        pinned = info.functional(*args, **sample.kwargs)
    torch.testing.assert_close(out, pinned, rtol=0, atol=0)


def test_distillation_losses_declare_formula_and_kernel():
    for fn in (losskit.distillation_kl_div, losskit.jsd):
        assert fn.backends.names == ("formula", "kernel")


def test_set_checks_is_per_thread_and_a_context_manager():
    assert losskit.get_checks() == "all"
    with losskit.set_checks("shapes"):
        assert losskit.get_checks() == "shapes" and not value_checks_enabled()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(losskit.get_checks()))
        thread.start()
        thread.join()
        assert seen == ["all"]
    assert losskit.get_checks() == "all" and value_checks_enabled()
    losskit.set_checks("shapes")  # takes effect without a with-block
    try:
        assert losskit.get_checks() == "shapes"
    finally:
        losskit.set_checks("all")


def test_value_checks_are_off_while_compiling():
    @torch.compile(fullgraph=True, backend="eager")
    def probe(x):
        return x + (1.0 if value_checks_enabled() else 0.0)

    assert probe(torch.zeros(1)).item() == 0.0
    assert value_checks_enabled()


BAD_INDEX = [
    ("cross_entropy", lambda t: (torch.randn(4, 3), t), r"Target 3 is out of bounds.*\[0, 3\)"),
    ("nll_loss", lambda t: (torch.randn(4, 3), t), r"Target 3 is out of bounds.*\[0, 3\)"),
    ("multi_margin_loss", lambda t: (torch.randn(4, 3), t), r"Target 3 is out of bounds"),
]


@pytest.mark.parametrize("level", ["all", "shapes"])
@pytest.mark.parametrize(("name", "make", "match"), BAD_INDEX, ids=[b[0] for b in BAD_INDEX])
def test_cpu_rejects_a_bad_class_index_with_losskits_error_at_every_level(name, make, match, level):
    # On the CPU torch's op makes the check; the functional rewords its error.
    target = torch.tensor([0, 1, 3, 1])
    with losskit.set_checks(level), pytest.raises(IndexError, match=match):
        getattr(losskit, name)(*make(target))


def test_pinned_formula_still_checks_class_indices():
    with losskit.use_backend("formula"), pytest.raises(IndexError, match="Target 5"):
        losskit.multi_margin_loss(torch.randn(2, 3), torch.tensor([0, 5]))


def test_bce_range_errors_are_value_errors_at_every_level():
    x, y = torch.rand(3, 2), torch.rand(3, 2)
    for level in ("all", "shapes"):
        with losskit.set_checks(level):
            with pytest.raises(ValueError, match="input should be between 0 and 1"):
                losskit.binary_cross_entropy(x * 3, y)
            with pytest.raises(ValueError, match="target should be between 0 and 1"):
                losskit.binary_cross_entropy(x, y - 2)


def test_multilabel_margin_bad_index_reworded_at_every_level():
    for level in ("all", "shapes"):
        with losskit.set_checks(level), pytest.raises(IndexError, match="Target 7"):
            losskit.multilabel_margin_loss(
                torch.randn(2, 3), torch.tensor([[0, 7, -1], [1, -1, 0]])
            )


def test_half_precision_is_computed_in_float32_around_torchs_op():
    # float16 label-smoothed CE over >= 10 classes at logits 1e4: torch's half kernel overflows.
    x = torch.full((2, 12), 1e4, dtype=torch.float16)
    x[:, 0] = -1e4
    t = torch.tensor([0, 1])
    ours = losskit.cross_entropy(x, t, label_smoothing=0.1)
    expected = TF.cross_entropy(x.float(), t, label_smoothing=0.1)
    assert ours.dtype == torch.float16 and torch.isfinite(ours)
    torch.testing.assert_close(ours.float(), expected, rtol=1e-3, atol=1e-3)


def test_soft_margin_formula_is_finite_where_torchs_op_overflows():
    x, y = torch.tensor([1e4, -1e4]), torch.tensor([-1.0, 1.0])
    assert torch.isfinite(losskit.soft_margin_loss(x, y))
    with losskit.use_backend("torch"):  # pinned, torch's op runs (and overflows)
        assert torch.isinf(losskit.soft_margin_loss(x, y))


def test_ctc_default_is_torchs_and_exact_grad_is_the_formula():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(12, 3, 6, generator=g, dtype=torch.float64).log_softmax(2)
    targets = torch.tensor([[1, 2, 3], [2, 2, 0], [5, 0, 0]])
    args = (targets, (12, 10, 8), (3, 2, 1))
    grads = []
    for fn in (
        losskit.ctc_loss,
        TF.ctc_loss,
        lambda *a: losskit.ctc_loss(*a, exact_grad=True),
    ):
        x = lp.clone().requires_grad_(True)
        out = fn(x, *args)
        grads.append((out.detach(), torch.autograd.grad(out, x)[0]))
    (v_ours, g_ours), (v_torch, g_torch), (v_exact, g_exact) = grads
    torch.testing.assert_close(v_ours, v_torch, rtol=0, atol=0)
    torch.testing.assert_close(g_ours, g_torch, rtol=0, atol=0)
    torch.testing.assert_close(v_exact, v_torch)
    assert not torch.allclose(g_exact, g_torch)  # the exact gradient differs by exp(log_probs)
    with losskit.use_backend("torch"), pytest.raises(losskit.BackendUnsupportedError):
        losskit.ctc_loss(lp, *args, exact_grad=True)
    # The formula (compiled calls, empty batches) gives torch's gradient unless asked otherwise.
    x = lp.clone().requires_grad_(True)
    with losskit.use_backend("formula"):
        out = losskit.ctc_loss(x, *args)
    torch.testing.assert_close(out.detach(), v_torch)
    torch.testing.assert_close(torch.autograd.grad(out, x)[0], g_torch)


# One sample per loss of this layer (default checks), compiled whole, forward and backward.
COMPILED = [*sorted(MIRRORS), "distillation_kl_div", "jsd"]


@pytest.mark.parametrize("name", COMPILED)
def test_compiles_whole_under_default_checks_and_equals_eager(name):
    info, sample = _sample(name)
    s = sample.cast(torch.float32)
    grad_args = [k for k in info.grad_args if isinstance(s.args[k], torch.Tensor)]

    def run(fn):
        args = list(s.args)
        for k in grad_args:
            args[k] = args[k].detach().clone().requires_grad_(True)
        out = fn(*args, **s.kwargs)
        grads = torch.autograd.grad(out.sum(), [args[k] for k in grad_args], allow_unused=True)
        return out, grads

    torch._dynamo.reset()
    compiled = torch.compile(info.functional, fullgraph=True, backend="aot_eager")
    out_c, g_c = run(compiled)
    out_e, g_e = run(info.functional)
    torch.testing.assert_close(out_c, out_e)
    for a, b in zip(g_c, g_e, strict=True):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)
