"""Retrieval metrics (precision@1, recall@k, R-precision, MAP@R) against a brute-force NumPy ranking
of every reference (losskit.reference.retrieval_metrics: one stable sort per query) and, when it is
installed, pytorch-metric-learning's AccuracyCalculator.
"""

from __future__ import annotations

import math

import pytest
import torch

from losskit import reference as R
from losskit.metric import (
    mean_average_precision_at_r,
    precision_at_1,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)

F64 = torch.float64


def _data(n=60, d=4, classes=5, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(classes, (n,), generator=g)


def _close(ours: dict, ref: dict):
    assert ours.keys() == ref.keys()
    for k in ours:
        assert math.isclose(ours[k], float(ref[k]), rel_tol=1e-12, abs_tol=1e-12), (k, ours, ref)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot"])
@pytest.mark.parametrize(("chunk", "ref_chunk"), [(1024, 16384), (7, 5), (1, 1)])
def test_against_itself_matches_the_brute_force_ranking(metric, chunk, ref_chunk):
    x, y = _data()
    ours = retrieval_metrics(
        x, y, recall_at=(1, 3), metric=metric, chunk_size=chunk, reference_chunk_size=ref_chunk
    )
    _close(ours, R.retrieval_metrics(x.numpy(), y.numpy(), recall_at=(1, 3), metric=metric))


@pytest.mark.parametrize("ref_includes_query", [False, True])
def test_separate_reference_set_matches_the_brute_force_ranking(ref_includes_query):
    q, yq = _data(30, seed=1)
    r, yr = _data(50, classes=7, seed=2)
    if ref_includes_query:
        r, yr = torch.cat([q, r]), torch.cat([yq, yr])
    ours = retrieval_metrics(
        q,
        yq,
        r,
        yr,
        recall_at=(4,),
        ref_includes_query=ref_includes_query,
        chunk_size=4,
        reference_chunk_size=11,
    )
    ref = R.retrieval_metrics(
        q.numpy(),
        yq.numpy(),
        r.numpy(),
        yr.numpy(),
        recall_at=(4,),
        ref_includes_query=ref_includes_query,
    )
    _close(ours, ref)


@pytest.mark.parametrize("metric", ["euclidean", "dot"])
def test_exact_ties_rank_the_smaller_reference_index_first(metric):
    # Small integer embeddings: every score is exact, many references tie (duplicates too), and
    # the blocks cut through runs of ties.
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 3, (80, 2), generator=g).to(F64)
    y = torch.randint(4, (80,), generator=g)
    ours = retrieval_metrics(
        x, y, recall_at=(2,), metric=metric, chunk_size=9, reference_chunk_size=6
    )
    _close(ours, R.retrieval_metrics(x.numpy(), y.numpy(), recall_at=(2,), metric=metric))


def test_single_metric_functions_agree_with_the_dictionary():
    x, y = _data()
    all_ = retrieval_metrics(x, y, recall_at=(5,))
    assert precision_at_1(x, y) == all_["precision_at_1"]
    assert r_precision(x, y) == all_["r_precision"]
    assert mean_average_precision_at_r(x, y) == all_["mean_average_precision_at_r"]
    assert recall_at_k(x, y, k=5) == all_["recall_at_5"]


def test_perfect_clusters_score_one_and_lone_queries_are_left_out():
    centres = torch.eye(4, dtype=F64) * 10
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # label 3 is alone: left out
    x = centres[y] + 0.01 * torch.randn(10, 4, dtype=F64)
    assert retrieval_metrics(x, y) == {
        "precision_at_1": 1.0,
        "r_precision": 1.0,
        "mean_average_precision_at_r": 1.0,
    }
    lone = retrieval_metrics(x[:3], torch.arange(3))
    assert all(math.isnan(v) for v in lone.values())


def test_map_at_r_of_a_hand_ranked_query():
    # Query at 0; references at distances 1..4 with relevance [1, 0, 1, 0], R = 2:
    # MAP@R = (1/1 + 0) / 2 = 0.5 (the second relevant one is at rank 3 > R), R-precision 1/2.
    q = torch.zeros(1, 1, dtype=F64)
    r = torch.tensor([[3.0], [1.0], [4.0], [2.0]], dtype=F64)
    yr = torch.tensor([7, 7, 0, 0])  # ranks: 1.0 (7), 2.0 (0), 3.0 (7), 4.0 (0)
    out = retrieval_metrics(q, torch.tensor([7]), r, yr, recall_at=(1, 2))
    assert out == {
        "precision_at_1": 1.0,
        "r_precision": 0.5,
        "mean_average_precision_at_r": 0.5,
        "recall_at_1": 1.0,
        "recall_at_2": 1.0,
    }


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_embeddings_give_nan(bad):
    x, y = _data()
    x[4, 0] = bad
    assert all(math.isnan(v) for v in retrieval_metrics(x, y).values())


def test_half_precision_ranks_in_float32():
    x, y = _data(dtype=torch.float16)
    expected = R.retrieval_metrics(x.double().numpy(), y.numpy(), recall_at=(2,))
    ours = retrieval_metrics(x, y, recall_at=(2,))
    for k in ours:  # float32 scores of float16 inputs: a near-tie may flip, nothing more
        assert abs(ours[k] - expected[k]) < 0.05, k


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, y: retrieval_metrics(x[0], y), ValueError, r"query must be a 2-D tensor"),
        (
            lambda x, y: retrieval_metrics(x, y[:5]),
            ValueError,
            r"query_labels must be a 1-D.*\(60,\).*\(5,\)",
        ),
        (
            lambda x, y: retrieval_metrics(x, y.double()),
            TypeError,
            r"query_labels must be an integer",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, x[:, :2], y),
            ValueError,
            r"reference must have query's feature size",
        ),
        (lambda x, y: retrieval_metrics(x, y, x), ValueError, r"reference_labels is required"),
        (
            lambda x, y: retrieval_metrics(x, y, x, y[:3]),
            ValueError,
            r"reference_labels must be a 1-D.*per reference row",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, None, y),
            ValueError,
            r"reference_labels given without reference",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, metric="l1"),
            ValueError,
            r"metric must be one of.*'l1'",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, recall_at=5),
            TypeError,
            r"recall_at must be a sequence of ints",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, recall_at=(0,)),
            ValueError,
            r"recall_at must be an int >= 1, got 0",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, chunk_size=0),
            ValueError,
            r"chunk_size must be an int >= 1",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, x[:3], y[:3], ref_includes_query=True),
            ValueError,
            r"first references",
        ),
        (
            lambda x, y: recall_at_k(x, y, k=-2),
            ValueError,
            r"recall_at must be an int >= 1, got -2",
        ),
        (
            lambda x, y: retrieval_metrics(x, y, ref_includes_query=1),
            TypeError,
            r"ref_includes_query must be a bool",
        ),
    ],
)
def test_bad_arguments_raise_naming_them(call, error, match):
    x, y = _data()
    with pytest.raises(error, match=match):
        call(x, y)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_pml_accuracy_calculator(metric):
    pytest.importorskip("sklearn")
    ac_mod = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.inference import CustomKNN

    distance = (
        LpDistance(normalize_embeddings=False) if metric == "euclidean" else CosineSimilarity()
    )
    calc = ac_mod.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        knn_func=CustomKNN(distance),
        device=torch.device("cpu"),
    )
    x, y = _data(200, d=6, classes=8, seed=3)
    ours = retrieval_metrics(x, y, metric=metric, chunk_size=32, reference_chunk_size=50)
    theirs = calc.get_accuracy(x, y)
    for k, v in theirs.items():
        assert math.isclose(ours[k], v, rel_tol=1e-12), k
    q, yq = _data(40, d=6, classes=8, seed=4)
    ours = retrieval_metrics(q, yq, x, y, metric=metric, reference_chunk_size=64)
    theirs = calc.get_accuracy(q, yq, x, y)
    for k, v in theirs.items():
        assert math.isclose(ours[k], v, rel_tol=1e-12), k
