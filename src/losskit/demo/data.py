"""The demo's data: scikit-learn's bundled handwritten digits (1797 8×8 images, nothing downloaded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Images flattened to 64 features in [0, 1], class labels, and a regression target."""

    x: torch.Tensor  # (N, 64) float32
    labels: torch.Tensor  # (N,) int64
    ink: torch.Tensor  # (N,) float32, standardised ink mass (see ink_mass)


def ink_mass(images: np.ndarray) -> np.ndarray:
    """The regression target computed from each image: its total intensity (ink mass)."""
    return images.reshape(len(images), -1).sum(axis=1)


def load_digits_split(seed: int, test_size: float = 0.3) -> tuple[Split, Split]:
    """A fixed stratified train/test split of the digits, standardised on the training split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float64) / 16.0
    labels = digits.target.astype(np.int64)
    ink = ink_mass(images)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed
    )
    mean, std = ink[idx_train].mean(), ink[idx_train].std()

    def split(idx: np.ndarray) -> Split:
        return Split(
            x=torch.tensor(images[idx].reshape(len(idx), -1), dtype=torch.float32),
            labels=torch.tensor(labels[idx]),
            ink=torch.tensor((ink[idx] - mean) / std, dtype=torch.float32),
        )

    return split(idx_train), split(idx_test)
