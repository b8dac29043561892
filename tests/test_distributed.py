"""losskit.distributed with 2 and 3 real ranks (gloo on the CPU, loopback only, bounded in time)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import losskit
from dist_harness import run_ranks
from losskit.distributed import all_gather_with_grad, vocab_parallel_cross_entropy

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_equals_single_process(world, tmp_path):
    import _dist_workers

    run_ranks(_dist_workers.CHECKS, world, tmp_path)


def test_without_a_process_group_everything_falls_back_to_one_process():
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    logits = torch.randn(5, 7)
    t = torch.randint(0, 7, (5,))
    torch.testing.assert_close(
        vocab_parallel_cross_entropy(logits, t, label_smoothing=0.1),
        torch.nn.functional.cross_entropy(logits, t, label_smoothing=0.1),
    )


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"target shape \(4,\) must equal.*\(5,\)"):
        vocab_parallel_cross_entropy(torch.randn(5, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="target must hold class indices"):
        vocab_parallel_cross_entropy(torch.randn(5, 7), torch.zeros(5))
    with pytest.raises(TypeError, match="target must hold class indices"):
        vocab_parallel_cross_entropy(torch.randn(5, 7), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="0-D"):
        all_gather_with_grad(torch.tensor(1.0))
    assert losskit.distributed is not None


def test_cross_rank_metric_learning_without_a_group_is_the_plain_loss():
    from losskit.distributed import CrossRankLoss, gather_embeddings
    from losskit.metric import triplet_loss

    emb = torch.randn(8, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    e, y = gather_embeddings(emb, labels)
    assert e is emb and y is labels
    torch.testing.assert_close(
        CrossRankLoss(losskit.nn.TripletLoss(margin=0.3))(emb, labels),
        triplet_loss(emb, labels, margin=0.3),
    )
    with pytest.raises(ValueError, match=r"labels must be \(B,\).*\(8, 3\).*\(7,\)"):
        gather_embeddings(emb, labels[:7])
    with pytest.raises(TypeError, match="loss must be a callable"):
        CrossRankLoss(3)
