"""Runs both parts of the demo with progress bars, prints the summary and writes the plots."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    seed: int = 0
    device: str = "cpu"
    quick: bool = False

    @property
    def metric_epochs(self) -> int:
        return 6 if self.quick else 40

    @property
    def retrieval_epochs(self) -> int:
        return 5 if self.quick else 15

    @property
    def multitask_epochs(self) -> int:
        return 8 if self.quick else 30  # Part 2: 5 strategies × 30 epochs < 60 s on 2 cores


def run(config: DemoConfig) -> dict:
    """Train, evaluate and plot; returns the numbers printed in the summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from . import plots
    from .data import load_digits_split
    from .metric_learning import train_embeddings
    from .multitask_training import STRATEGIES, TASKS, train_multitask
    from .multitask_training import explain as explain_multitask
    from .retrieval_part import results_table, train_proxy_anchor

    console = Console()
    started = time.perf_counter()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device(config.device)
    train, test = load_digits_split(config.seed)
    console.print(
        f"digits: {len(train.labels)} train / {len(test.labels)} test images, device {device}, "
        f"seed {config.seed}{', quick' if config.quick else ''}"
    )

    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("triplet (batch-hard, P×K)", total=config.metric_epochs, loss=0.0)
        metric = train_embeddings(
            train,
            test,
            epochs=config.metric_epochs,
            seed=config.seed,
            device=device,
            on_epoch=lambda e, loss: progress.update(task, advance=1, loss=loss),
        )
        task = progress.add_task("proxy-anchor", total=config.retrieval_epochs, loss=0.0)
        proxy = train_proxy_anchor(
            train,
            test,
            epochs=config.retrieval_epochs,
            seed=config.seed,
            device=device,
            on_epoch=lambda e, loss: progress.update(task, advance=1, loss=loss),
        )
        multitask = {}
        for strategy in STRATEGIES:
            task = progress.add_task(
                f"multi-task: {strategy}", total=config.multitask_epochs, loss=0.0
            )
            multitask[strategy] = train_multitask(
                strategy,
                train,
                test,
                epochs=config.multitask_epochs,
                seed=config.seed,
                device=device,
                on_epoch=lambda e, loss, t=task: progress.update(t, advance=1, loss=loss),
            )

    retrieval = Table(
        title="Part 1: retrieval on the test split (nearest neighbour, excluding self)"
    )
    retrieval.add_column("embedding")
    retrieval.add_column("recall@1", justify="right")
    retrieval.add_row("raw pixels (64-d)", f"{metric.recall_pixels:.3f}")
    retrieval.add_row("untrained network", f"{metric.recall_untrained:.3f}")
    retrieval.add_row("batch-hard triplet", f"{metric.recall_trained:.3f}")
    console.print(retrieval)
    console.print(results_table(proxy))

    mt = Table(title="Part 2: multi-task (digit class + ink mass), test split")
    for col in ("strategy", "digit accuracy", "ink RMSE (std units)", "final weights (digit, ink)"):
        mt.add_column(col, justify="left" if col == "strategy" else "right")
    for r in multitask.values():
        w = ", ".join(f"{v:.3f}" for v in r.weights[-1])
        mt.add_row(r.strategy, f"{r.accuracy:.3f}", f"{r.ink_rmse:.3f}", w)
    console.print(mt)
    console.print(explain_multitask(multitask))

    out = config.out
    files = [
        plots.loss_curves(
            {"batch-hard triplet": metric.epoch_losses},
            "Part 1: triplet loss",
            out / "triplet_loss.png",
        ),
        plots.loss_curves(
            {s: r.epoch_losses for s, r in multitask.items()},
            "Part 2: weighted multi-task loss",
            out / "multitask_loss.png",
        ),
        plots.task_weights(
            {s: r.weights for s, r in multitask.items()}, TASKS, out / "task_weights.png"
        ),
        plots.embedding_projection(
            metric.test_embeddings.numpy(),
            test.labels.numpy(),
            f"Test embeddings (PCA), recall@1 {metric.recall_trained:.3f}",
            out / "embeddings_pca.png",
        ),
    ]
    elapsed = time.perf_counter() - started
    console.print(f"recall@1 {metric.recall_trained:.3f}")
    console.print(f"plots written to {out.resolve()}: " + ", ".join(f.name for f in files))
    console.print(f"done in {elapsed:.1f} s")
    return {
        "recall_at_1": metric.recall_trained,
        "recall_untrained": metric.recall_untrained,
        "recall_pixels": metric.recall_pixels,
        "retrieval": {
            "proxy_anchor": proxy.trained,
            "untrained": proxy.untrained,
            "pixels": proxy.pixels,
        },
        "multitask": {
            s: {
                "accuracy": r.accuracy,
                "ink_rmse": r.ink_rmse,
                "weights": np.asarray(r.weights[-1]).tolist(),
            }
            for s, r in multitask.items()
        },
        "files": [str(f) for f in files],
        "seconds": elapsed,
    }
