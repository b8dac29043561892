"""The demo's PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(curves: Mapping[str, Sequence[float]], title: str, path: Path) -> Path:
    """One line per named training curve (loss per epoch)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def task_weights(weights: Mapping[str, np.ndarray], task_names: Sequence[str], path: Path) -> Path:
    """Per strategy, the weight of each task over the epochs (one panel per strategy)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(weights), figsize=(4.2 * len(weights), 3.6), squeeze=False)
    for ax, (strategy, w) in zip(axes[0], weights.items(), strict=True):
        for t, name in enumerate(task_names):
            ax.plot(np.arange(1, len(w) + 1), w[:, t], label=name)
        ax.set_title(strategy)
        ax.set_xlabel("epoch")
        ax.set_ylabel("task weight")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embedding_projection(
    embeddings: np.ndarray, labels: np.ndarray, title: str, path: Path
) -> Path:
    """A 2-D PCA projection of the embeddings, coloured by class."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=9, alpha=0.85)
    ax.legend(*sc.legend_elements(), title="digit", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
