"""losskit.contrastive with 2 and 3 real ranks (gloo on the CPU): every loss against the
single-process loss on the global batch, uneven local batches, collectives counted, and the
README's CLIP recipe trained side by side with one process. One spawn per world size."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from dist_harness import run_ranks

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


@pytest.mark.parametrize("world", [2, 3])
def test_every_contrastive_loss_across_ranks_equals_the_single_process_loss(world, tmp_path):
    import _dist_contrastive_workers

    run_ranks(_dist_contrastive_workers.CHECKS, world, tmp_path)


def test_the_readme_recipe_is_the_one_the_ranks_run():
    from pathlib import Path

    import _dist_contrastive_workers

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert _dist_contrastive_workers.CLIP_RECIPE in readme
