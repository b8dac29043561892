"""losskit.contrastive beyond the generic suite: the peers (open_clip, pytorch-metric-learning,
sentence-transformers' formula), the block-wise path's memory bound, the Modules' learnable
scale, torch.compile, GradCache against the plain step, and edge cases.

The multi-rank tests are in tests/test_contrastive_dist.py.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF
from torch.utils._python_dispatch import TorchDispatchMode

import losskit
from losskit import reference as R
from losskit.contrastive import (
    ClipLoss,
    InfoNCELoss,
    SigLipLoss,
    SupConLoss,
    cached_contrastive_step,
    clip_loss,
    info_nce_loss,
    siglip_loss,
    supcon_loss,
)

F64 = torch.float64


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, allow_unused=True)
    return out.detach(), grads


def _same(a, b, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------- peers


def _open_clip_loss():
    """open_clip's loss module, loaded from its file: the package's __init__ imports
    torchvision, which does not import with this torch; loss.py needs only torch."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bias", [None, -0.7])
@pytest.mark.parametrize("chunk", [None, 3])
def test_clip_loss_equals_open_clip_ClipLoss(bias, chunk):
    oc = _open_clip_loss()
    img, txt = TF.normalize(_randn(0, 7, 5), dim=1), TF.normalize(_randn(1, 7, 5), dim=1)
    scale = torch.tensor(14.0, dtype=F64)
    b = None if bias is None else torch.tensor(bias, dtype=F64)
    extra = () if b is None else (b,)
    theirs = _value_and_grads(
        lambda x, y, s, *bb: oc.ClipLoss()(x, y, s, *bb), img, txt, scale, *extra
    )
    ours = _value_and_grads(
        lambda x, y, s, *bb: clip_loss(x, y, s, logit_bias=bb[0] if bb else None, chunk_size=chunk),
        img,
        txt,
        scale,
        *extra,
    )
    _same(ours[0], theirs[0])
    for a, t in zip(ours[1], theirs[1], strict=True):
        _same(a, t)


@pytest.mark.parametrize("chunk", [None, 2])
def test_siglip_loss_equals_open_clip_SigLipLoss(chunk):
    oc = _open_clip_loss()
    img, txt = TF.normalize(_randn(2, 6, 4), dim=1), TF.normalize(_randn(3, 6, 4), dim=1)
    s, b = torch.tensor(10.0, dtype=F64), torch.tensor(-10.0, dtype=F64)
    theirs = _value_and_grads(lambda *a: oc.SigLipLoss()(*a), img, txt, s, b)
    ours = _value_and_grads(lambda *a: siglip_loss(*a, chunk_size=chunk), img, txt, s, b)
    _same(ours[0], theirs[0])
    for a, t in zip(ours[1], theirs[1], strict=True):
        _same(a, t)


def _pml_losses():
    return pytest.importorskip("pytorch_metric_learning.losses")


@pytest.mark.parametrize("with_labels", [False, True])
def test_info_nce_equals_pml_NTXentLoss_with_reference_embeddings(with_labels):
    losses = _pml_losses()
    q, k = _randn(4, 8, 5), _randn(5, 8, 5)
    # P x K labels: every query has as many positives, where PML's mean over positive pairs
    # equals losskit's mean over queries.
    y = torch.arange(4).repeat(2) if with_labels else torch.arange(8)
    pml = losses.NTXentLoss(temperature=0.2)
    # ref_labels must be another tensor: PML drops the diagonal pairs when it *is* labels.
    theirs = _value_and_grads(lambda a, b: pml(a, y, ref_emb=b, ref_labels=y.clone()), q, k)
    ours = _value_and_grads(
        lambda a, b: info_nce_loss(a, b, temperature=0.2, labels=y if with_labels else None), q, k
    )
    _same(ours[0], theirs[0], rtol=1e-9)
    for a, t in zip(ours[1], theirs[1], strict=True):
        _same(a, t, rtol=1e-9, atol=1e-11)


def test_supcon_equals_pml_SupConLoss_on_the_flattened_views():
    losses = _pml_losses()
    f = _randn(6, 6, 2, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    pml = losses.SupConLoss(temperature=0.3)
    theirs = _value_and_grads(lambda x: pml(x.reshape(12, 5), y.repeat_interleave(2)), f)
    ours = _value_and_grads(lambda x: supcon_loss(x, y, temperature=0.3, base_temperature=0.3), f)
    _same(ours[0], theirs[0], rtol=1e-9)
    _same(ours[1][0], theirs[1][0], rtol=1e-9, atol=1e-11)


def sentence_transformers_mnrl(anchors, positives, negatives=None, scale=20.0, symmetric=False):
    """sentence-transformers' MultipleNegativesRankingLoss (v5, single device) written out: cosine
    scores times ``scale``; candidates are every positive then every hard negative of the batch;
    ``symmetric`` is directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
    (the classic MultipleNegativesSymmetricRankingLoss)."""
    docs = positives if negatives is None else torch.cat([positives, negatives])
    qd = TF.normalize(anchors, dim=1) @ TF.normalize(docs, dim=1).T * scale
    pos = qd.diagonal()
    log_z = torch.logsumexp(qd, 1)
    if symmetric:
        dq = TF.normalize(positives, dim=1) @ TF.normalize(anchors, dim=1).T * scale
        log_z = 0.5 * (log_z + torch.logsumexp(dq, 1))
    return -(pos - log_z).mean()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_negatives", [False, True])
def test_info_nce_equals_sentence_transformers_mnrl_formula(symmetric, with_negatives):
    # Its formula written out (the peer itself, when installed, is in the next test).
    a, p, n = _randn(7, 6, 4), _randn(8, 6, 4), _randn(9, 6, 4)
    neg = n if with_negatives else None
    theirs = _value_and_grads(
        lambda x, y: sentence_transformers_mnrl(x, y, neg, 20.0, symmetric), a, p
    )
    ours = _value_and_grads(
        lambda x, y: info_nce_loss(x, y, temperature=1 / 20.0, negatives=neg, symmetric=symmetric),
        a,
        p,
    )
    _same(ours[0], theirs[0])
    for g1, g2 in zip(ours[1], theirs[1], strict=True):
        _same(g1, g2)


def _mnrl():
    """sentence-transformers' MultipleNegativesRankingLoss class (6.x path, then the 5.x one)."""
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    return MultipleNegativesRankingLoss


def test_info_nce_equals_sentence_transformers_MultipleNegativesRankingLoss():
    # The peer's own loss on given embeddings (compute_loss_from_embeddings, what its forward
    # calls after the model): anchors, positives, then hard-negative columns. One test function:
    # importing sentence-transformers takes seconds.
    mnrl = _mnrl()
    a, p = _randn(40, 6, 4), _randn(41, 6, 4)
    hard = [_randn(42, 6, 4), _randn(43, 6, 4)]
    cases = [
        ({}, {}, []),
        ({"scale": 10.0}, {"temperature": 0.1}, hard[:1]),
        ({}, {}, hard),  # n-tuples: every anchor sees every column's hard negatives
        (
            {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"},
            {"symmetric": True},
            hard[:1],
        ),
    ]
    for peer_kwargs, our_kwargs, negs in cases:
        peer = mnrl(None, **peer_kwargs)  # the model is only used by its forward
        kw = {"temperature": 1 / 20.0, **our_kwargs}
        for chunk in (None, 4):
            theirs = _value_and_grads(
                lambda x, y, *n, peer=peer: peer.compute_loss_from_embeddings([x, y, *n], None),
                a,
                p,
                *negs,
            )
            ours = _value_and_grads(
                lambda x, y, *n, c=chunk, kw=kw: info_nce_loss(
                    x, y, negatives=torch.cat(n) if n else None, chunk_size=c, **kw
                ),
                a,
                p,
                *negs,
            )
            _same(ours[0], theirs[0])
            for g1, g2 in zip(ours[1], theirs[1], strict=True):
                _same(g1, g2)


# ---------------------------------------------------------------- the block-wise path


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


_LABELS_96 = torch.arange(96) % 7


@pytest.mark.parametrize(
    ("loss", "args"),
    [
        ("clip", {}),
        ("clip", {"logit_bias": 0.5}),
        ("siglip", {}),
        ("info_nce", {"labels": _LABELS_96, "symmetric": True}),
        ("info_nce", {"negatives": "bank"}),
        ("info_nce", {"negatives": "per-query", "labels": _LABELS_96}),
        ("supcon", {"labels": _LABELS_96[:48]}),
        ("supcon", {"labels": None, "contrast_mode": "one"}),
    ],
)
def test_the_chunked_path_never_builds_the_similarity_matrix(loss, args):
    n, d, chunk = 96, 4, 8
    img, txt = _randn(10, n, d).requires_grad_(True), _randn(11, n, d).requires_grad_(True)
    scale = torch.tensor(5.0, dtype=F64, requires_grad=True)
    # rows and columns of S; the largest tensor the inputs themselves make
    rows, m, largest_input = n, n, n * d
    if args.get("negatives") == "bank":  # 32 more columns
        args = {**args, "negatives": _randn(12, 32, d).requires_grad_(True)}
        m += 32
    elif args.get("negatives") == "per-query":  # (n, 3, d) negatives, (n, 3) logits
        args = {**args, "negatives": _randn(12, n, 3, d).requires_grad_(True)}
        largest_input = n * 3 * d
    if loss == "supcon":  # 48 samples x 2 views: a 96 x 96 matrix of views
        feats = torch.stack([img[:48], txt[:48]], 1)
        rows = 48 if args.get("contrast_mode") == "one" else n

    def run(chunk_size):
        if loss == "clip":
            return clip_loss(img, txt, scale, chunk_size=chunk_size, **args)
        if loss == "siglip":
            return siglip_loss(img, txt, scale, -1.0, chunk_size=chunk_size)
        if loss == "info_nce":
            return info_nce_loss(img, txt, chunk_size=chunk_size, **args)
        return supcon_loss(feats, chunk_size=chunk_size, **args)

    with _LargestTensor() as plain:
        run(None).backward()
    assert plain.largest >= rows * m  # the probe sees the matrix when there is one
    with _LargestTensor() as chunked:
        out = run(chunk)
        out.backward()
    assert chunked.largest <= max(chunk * m, largest_input), chunked.largest


_Q, _K = _randn(50, 11, 4), _randn(51, 11, 4)
_Y = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0, 0, 4, 2])
_PER_QUERY, _BANK = _randn(52, 11, 3, 4), _randn(53, 5, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": _Y},
        {"labels": _Y, "symmetric": True, "normalize": False, "temperature": 2.0},
        {"labels": torch.zeros(11, dtype=torch.int64)},  # no negative at all: loss 0
        {"negatives": _PER_QUERY},
        {"negatives": _PER_QUERY, "labels": _Y, "symmetric": True},
        {"negatives": _BANK},
        {"negatives": _BANK, "labels": _Y, "symmetric": True},
        {"negatives": _PER_QUERY[:, :0]},  # M = 0
    ],
    ids=lambda kw: "-".join(
        f"{k}{tuple(v.shape) if torch.is_tensor(v) else v}" for k, v in kw.items()
    ),
)
@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_chunked_info_nce_equals_the_unchunked_form_and_the_reference(kwargs, chunk):
    kwargs = {"temperature": 0.3, **kwargs}
    neg = kwargs.pop("negatives", None)
    up = _randn(54, 11)
    tensors = (_Q, _K) if neg is None else (_Q, _K, neg)

    def fn(c):
        return lambda q, k, *n: (
            info_nce_loss(
                q, k, negatives=n[0] if n else None, chunk_size=c, reduction="none", **kwargs
            )
            @ up
        )

    got, want = _value_and_grads(fn(chunk), *tensors), _value_and_grads(fn(None), *tensors)
    _same(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        _same(a, b)
        assert torch.isfinite(a).all()
    ref = R.info_nce_loss(
        _Q.numpy(),
        _K.numpy(),
        negatives=None if neg is None else neg.numpy(),
        reduction="none",
        **{k: v.numpy() if torch.is_tensor(v) else v for k, v in kwargs.items()},
    )
    out = info_nce_loss(*tensors[:2], negatives=neg, chunk_size=chunk, reduction="none", **kwargs)
    _same(out, torch.from_numpy(ref))


@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("labels", [_Y[:7], None])
@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_chunked_supcon_equals_the_unchunked_form_and_the_reference(mode, labels, chunk):
    f = _randn(55, 7, 3, 4)
    up = _randn(56, 7, 3 if mode == "all" else 1).reshape(7, -1).squeeze(-1)
    kw = {"contrast_mode": mode, "temperature": 0.4, "reduction": "none"}
    got = _value_and_grads(lambda x: (supcon_loss(x, labels, chunk_size=chunk, **kw) * up).sum(), f)
    want = _value_and_grads(lambda x: (supcon_loss(x, labels, **kw) * up).sum(), f)
    _same(got[0], want[0])
    _same(got[1][0], want[1][0])
    ref = R.supcon_loss(f.numpy(), None if labels is None else labels.numpy(), **kw)
    _same(supcon_loss(f, labels, chunk_size=chunk, **kw), torch.from_numpy(ref))


@pytest.mark.parametrize("chunk", [1, 5, 16, 100])
@pytest.mark.parametrize("bias", [None, 0.3])
def test_chunked_clip_and_siglip_equal_the_reference_for_any_chunk_size(chunk, bias):
    img, txt = _randn(12, 16, 3), _randn(13, 16, 3)
    s = torch.tensor(2.5, dtype=F64)
    for name in ("clip", "siglip"):
        if name == "clip":
            out = clip_loss(img, txt, s, logit_bias=bias, chunk_size=chunk, reduction="none")
            ref = R.clip_loss(img.numpy(), txt.numpy(), 2.5, bias, reduction="none")
        else:
            out = siglip_loss(img, txt, s, bias, chunk_size=chunk, reduction="none")
            ref = R.siglip_loss(img.numpy(), txt.numpy(), 2.5, bias, reduction="none")
        _same(out, torch.from_numpy(ref))


def test_the_chunked_gradient_is_first_order_and_says_so():
    x = _randn(14, 4, 3).requires_grad_(True)
    (g,) = torch.autograd.grad(clip_loss(x, x.flip(0), 2.0), x, create_graph=True)
    assert g.requires_grad  # the plain path is twice differentiable
    with pytest.raises(RuntimeError, match=r"first-order only.*chunk_size=None"):
        torch.autograd.grad(clip_loss(x, x.flip(0), 2.0, chunk_size=2), x, create_graph=True)


@pytest.mark.parametrize("chunk", [None, 2])
def test_an_empty_batch_is_nan_for_mean_and_zero_for_sum(chunk):
    e = torch.zeros(0, 3, dtype=F64, requires_grad=True)
    assert torch.isnan(clip_loss(e, e, 2.0, chunk_size=chunk))
    assert clip_loss(e, e, 2.0, chunk_size=chunk, reduction="sum") == 0
    assert siglip_loss(e, e, 2.0, -1.0, chunk_size=chunk, reduction="none").shape == (0,)
    assert torch.isnan(info_nce_loss(e, e)) and torch.isnan(supcon_loss(e[:, None], None))


def test_half_precision_inputs_accumulate_in_float32_on_the_chunked_path():
    img, txt = _randn(15, 12, 8), _randn(16, 12, 8)
    for dtype in (torch.bfloat16, torch.float16):
        lo_img, lo_txt = img.to(dtype), txt.to(dtype)
        out = clip_loss(lo_img, lo_txt, 3.0, chunk_size=5)
        assert out.dtype == dtype
        ref = R.clip_loss(lo_img.double().numpy(), lo_txt.double().numpy(), 3.0)
        assert abs(float(out) - float(ref)) < 2e-2 * max(1.0, abs(float(ref)))


def test_under_autocast_the_blocks_compute_in_float32():
    a, b = _randn(36, 10, 4).float(), _randn(37, 10, 4).float()
    want = clip_loss(a, b, 2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _value_and_grads(lambda x, y: clip_loss(x, y, 2.0, chunk_size=3), a, b)
        sig = siglip_loss(a, b, 2.0, -1.0, chunk_size=3)
    assert got[0].dtype == torch.float32
    _same(got[0], want, rtol=1e-6, atol=1e-6)
    _same(sig, siglip_loss(a, b, 2.0, -1.0), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- Modules


def test_clip_module_owns_a_log_scale_and_equals_the_functional():
    crit = ClipLoss(chunk_size=3)
    assert isinstance(crit.logit_scale, torch.nn.Parameter)
    assert math.isclose(crit.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    img, txt = _randn(17, 6, 4).float(), _randn(18, 6, 4).float()
    got = crit(img, txt)
    _same(got, clip_loss(img, txt, crit.logit_scale.detach().exp(), chunk_size=3), rtol=0, atol=0)
    got.backward()
    assert crit.logit_scale.grad is not None and crit.logit_scale.grad != 0


def test_the_learnable_scale_is_clamped_to_100_in_place_and_keeps_its_gradient():
    crit = ClipLoss()
    with torch.no_grad():
        crit.logit_scale.fill_(math.log(500.0))  # an optimizer step overshot the cap
    img, txt = _randn(19, 5, 3).float(), _randn(20, 5, 3).float()
    loss = crit(img, txt)
    assert math.isclose(crit.logit_scale.item(), math.log(100.0), rel_tol=1e-6)
    _same(loss, clip_loss(img, txt, 100.0), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert crit.logit_scale.grad != 0  # not a clamp in the graph: the scale can come back down


def test_siglip_module_uses_the_paper_init_and_equals_the_functional():
    crit = SigLipLoss()
    assert math.isclose(crit.logit_scale.exp().item(), 10.0, rel_tol=1e-6)
    assert crit.logit_bias.item() == -10.0
    img, txt = _randn(21, 6, 4).float(), _randn(22, 6, 4).float()
    got = crit(img, txt)
    want = siglip_loss(img, txt, crit.logit_scale.detach().exp(), crit.logit_bias.detach())
    _same(got, want, rtol=0, atol=0)
    got.backward()
    assert crit.logit_bias.grad is not None and crit.logit_scale.grad is not None


def test_module_hyper_parameters_are_checked_when_built():
    with pytest.raises(
        ValueError, match=r"init_logit_scale \(log space\) must be in .* = \[0, 4.605\], got 5.0"
    ):
        ClipLoss(init_logit_scale=5.0)
    with pytest.raises(ValueError, match="max_logit_scale must be >= 1"):
        SigLipLoss(max_logit_scale=0.5)
    with pytest.raises(ValueError, match="distributed must be one of"):
        SigLipLoss(distributed="bidir")
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        ClipLoss(chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be an int or None, got float"):
        SupConLoss(chunk_size=8.0)
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        ClipLoss(reduction="avg")
    with pytest.raises(TypeError, match=r"group must be a torch\.distributed\.ProcessGroup"):
        InfoNCELoss(group=0)
    with pytest.raises(ValueError, match="init_logit_bias must be finite"):
        SigLipLoss(init_logit_bias=math.inf)
    assert losskit.contrastive.ClipLoss is losskit.nn.ClipLoss


# ---------------------------------------------------------------- torch.compile


def _every_loss(a, b, s):
    """Every loss of the package on one batch (plain and block-wise paths), stacked."""
    y = torch.tensor([0, 1, 0, 1, 2, 2])
    neg = torch.linspace(-1, 1, 48, dtype=a.dtype).reshape(6, 2, 4)
    return torch.stack(
        [
            clip_loss(a, b, s),
            clip_loss(a, b, s, logit_bias=-s, chunk_size=4),
            siglip_loss(a, b, s, -2.0 * s, chunk_size=4),
            info_nce_loss(a, b * s, labels=y, negatives=neg, symmetric=True, temperature=0.3),
            info_nce_loss(a, b * s, labels=y, negatives=neg, temperature=0.3, chunk_size=4),
            supcon_loss(torch.stack([a, b * s], 1), y),
            supcon_loss(torch.stack([a, b * s], 1), y, contrast_mode="one", chunk_size=4),
        ]
    )


def test_every_loss_compiles_whole_forward_and_backward():
    # One compiled graph holding all of them (one compilation keeps the test fast).
    torch._dynamo.reset()
    compiled = torch.compile(_every_loss, fullgraph=True, backend="aot_eager")
    inputs = (_randn(24, 6, 4), _randn(25, 6, 4), torch.tensor(2.0, dtype=F64))
    up = _randn(26, 7)
    got = _value_and_grads(lambda *t: compiled(*t) @ up, *inputs)
    want = _value_and_grads(lambda *t: _every_loss(*t) @ up, *inputs)
    _same(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        _same(a, b)


def test_the_clip_module_compiles_whole_with_its_in_place_clamp():
    torch._dynamo.reset()
    eager, compiled_crit = ClipLoss(chunk_size=4), ClipLoss(chunk_size=4)
    compiled = torch.compile(compiled_crit, fullgraph=True, backend="aot_eager")
    img, txt = _randn(26, 6, 4).float(), _randn(27, 6, 4).float()
    a, b = eager(img, txt), compiled(img, txt)
    a.backward()
    b.backward()
    _same(a, b, rtol=1e-6, atol=1e-6)
    _same(eager.logit_scale.grad, compiled_crit.logit_scale.grad, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- GradCache


class _Tower(torch.nn.Module):
    def __init__(self, d_in: int, dropout: float = 0.0, key: str | None = None) -> None:
        super().__init__()
        self.key = key
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d_in, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16, 8),
        )

    def forward(self, x):
        return self.net(x[self.key] if self.key else x)


def _grads(*modules):
    return [p.grad.clone() for m in modules for p in m.parameters()]


def test_cached_step_gives_the_gradients_of_the_plain_full_batch_step():
    torch.manual_seed(0)
    img_enc, txt_enc, crit = _Tower(6).double(), _Tower(5, key="ids").double(), ClipLoss().double()
    x_img, x_txt = _randn(28, 20, 6), {"ids": _randn(29, 20, 5)}
    loss_fn = lambda a, b: crit(TF.normalize(a, dim=1), TF.normalize(b, dim=1))  # noqa: E731
    plain = loss_fn(img_enc(x_img), txt_enc(x_txt))
    plain.backward()
    expected = _grads(img_enc, txt_enc, crit)
    for m in (img_enc, txt_enc, crit):
        m.zero_grad()
    loss = cached_contrastive_step(loss_fn, [img_enc, txt_enc], [x_img, x_txt], mini_batch=6)
    _same(loss, plain.detach())
    for a, b in zip(_grads(img_enc, txt_enc, crit), expected, strict=True):
        _same(a, b)


def test_cached_step_replays_dropout_masks():
    # The oracle runs the encoder on the same mini-batches with a graph: the same dropout draws.
    torch.manual_seed(0)
    enc = _Tower(6, dropout=0.5).double()
    q, k = _randn(30, 12, 6), _randn(31, 12, 6)
    loss_fn = lambda a, b: info_nce_loss(a, b, temperature=0.5, symmetric=True)  # noqa: E731
    torch.manual_seed(1)
    emb = [torch.cat([enc(part) for part in x.split(5)]) for x in (q, k)]
    plain = loss_fn(*emb)
    plain.backward()
    expected = _grads(enc)
    enc.zero_grad()
    torch.manual_seed(1)
    loss = cached_contrastive_step(loss_fn, [enc, enc], [q, k], mini_batch=5)
    _same(loss, plain.detach())
    for a, b in zip(_grads(enc), expected, strict=True):
        _same(a, b)


def test_cached_step_rejects_bad_arguments():
    enc = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="mini_batch must be an int >= 1, got 0"):
        cached_contrastive_step(info_nce_loss, [enc, enc], [x, x], mini_batch=0)
    with pytest.raises(ValueError, match="pair up one to one, got 2 encoders and 1 inputs"):
        cached_contrastive_step(info_nce_loss, [enc, enc], [x], mini_batch=2)
    with pytest.raises(TypeError, match=r"encoders\[1\] must be callable"):
        cached_contrastive_step(info_nce_loss, [enc, 3], [x, x], mini_batch=2)
    with pytest.raises(ValueError, match="same batch size"):
        cached_contrastive_step(info_nce_loss, [enc, enc], [x, {"a": x, "b": x[:3]}], mini_batch=2)


# ---------------------------------------------------------------- edge cases and errors


def test_info_nce_with_every_key_a_positive_is_zero_with_a_finite_gradient():
    q, k = _randn(32, 4, 3).requires_grad_(True), _randn(33, 4, 3)
    out = info_nce_loss(q, k, labels=torch.zeros(4, dtype=torch.int64))
    out.backward()
    assert out == 0 and torch.isfinite(q.grad).all()


def test_info_nce_shared_bank_of_another_width_is_refused():
    q = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"shared bank \(M, 3\), got shape \(5, 2\)"):
        info_nce_loss(q, q, negatives=torch.randn(5, 2))
    with pytest.raises(ValueError, match="negatives is on meta but query is on cpu"):
        info_nce_loss(q, q, negatives=torch.randn(5, 3, device="meta"))


def test_without_a_process_group_the_group_options_change_nothing():
    img, txt = _randn(34, 5, 3), _randn(35, 5, 3)
    base = clip_loss(img, txt, 2.0)
    for kw in ({"local_loss": False}, {"gather_with_grad": False}):
        _same(clip_loss(img, txt, 2.0, **kw), base)
    _same(
        siglip_loss(img, txt, 2.0, -1.0, distributed="neighbour_exchange"),
        siglip_loss(img, txt, 2.0, -1.0),
    )
