"""PKSampler: batch structure, short-class policies, determinism and DataLoader use."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from losskit.metric import PKSampler

# class sizes: 0 -> 6, 1 -> 5, 2 -> 4, 3 -> 3, 4 -> 2, 5 -> 1 (singleton)
LABELS = np.repeat(np.arange(6), [6, 5, 4, 3, 2, 1])
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]


def _classes(batch, k):
    return [LABELS[batch[i * k]] for i in range(len(batch) // k)]


@pytest.mark.parametrize("policy", ["replace", "skip"])
def test_batches_hold_p_distinct_classes_times_k(policy):
    p, k = 2, 4
    sampler = PKSampler(LABELS, p, k, seed=0, short_classes=policy, num_batches=50)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 50
    seen = Counter()
    for batch in batches:
        assert len(batch) == p * k
        classes = _classes(batch, k)
        assert len(set(classes)) == p
        for i, c in enumerate(classes):
            block = batch[i * k : (i + 1) * k]
            assert all(LABELS[j] == c for j in block)  # class by class, contiguous
            size = int((c == LABELS).sum())
            if size >= k:
                assert len(set(block)) == k  # no repeat inside a batch when the class suffices
            else:
                assert set(block) == set(np.flatnonzero(c == LABELS))  # all of it, topped up
            seen[c] += 1
    assert 5 not in seen  # the singleton class is never drawn
    if policy == "skip":
        assert set(seen) == {0, 1, 2}
    else:
        assert set(seen) == {0, 1, 2, 3, 4}


def test_each_class_cycles_through_its_samples():
    # One class of 6 samples, k = 4: over 3 draws (12 slots) every sample appears exactly twice.
    labels = [0] * 6 + [1] * 6
    sampler = PKSampler(labels, p=2, k=4, num_batches=3, seed=3)
    counts = Counter(i for batch in sampler for i in batch)
    assert set(counts.values()) == {2} and len(counts) == 12


def test_deterministic_for_a_seed_and_epochs_differ():
    a = PKSampler(LABELS, 3, 2, seed=42)
    b = PKSampler(LABELS, 3, 2, seed=42)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    assert list(a) == list(b)  # second epochs agree too
    assert list(a) != first_a  # a later epoch is a new draw
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert list(PKSampler(LABELS, 3, 2, generator=g1)) == list(
        PKSampler(LABELS, 3, 2, generator=g2)
    )
    assert list(PKSampler(LABELS, 3, 2, seed=1)) != list(PKSampler(LABELS, 3, 2, seed=2))


def test_default_length_covers_the_eligible_samples_once():
    sampler = PKSampler(LABELS, p=2, k=2)  # 20 eligible samples (singleton excluded)
    assert len(sampler) == 20 // 4
    assert len(PKSampler(LABELS, p=3, k=4, short_classes="skip")) == 1  # max(1, 15 // 12)


def test_works_as_a_dataloader_batch_sampler():
    data = TensorDataset(torch.arange(len(LABELS)), torch.as_tensor(LABELS))
    loader = DataLoader(data, batch_sampler=PKSampler(torch.as_tensor(LABELS), 2, 3, seed=0))
    for idx, lab in loader:
        assert idx.shape == (6,)
        assert torch.equal(lab, torch.as_tensor(LABELS)[idx])


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"p=4 identities per batch, but only 3 classes"):
        PKSampler(LABELS, 4, 4, short_classes="skip")
    with pytest.raises(ValueError, match=r"k must be an int >= 2, got 1"):
        PKSampler(LABELS, 2, 1)
    with pytest.raises(ValueError, match=r"short_classes must be one of"):
        PKSampler(LABELS, 2, 2, short_classes="pad")
    with pytest.raises(ValueError, match=r"labels must be a 1-D sequence of integer labels"):
        PKSampler(np.zeros((3, 2), dtype=int), 1, 2)
    with pytest.raises(ValueError, match=r"either seed or generator"):
        PKSampler(LABELS, 2, 2, seed=0, generator=torch.Generator())
    with pytest.raises(TypeError, match=r"p must be an int"):
        PKSampler(LABELS, 2.0, 2)
