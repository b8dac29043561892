"""``losskit demo``: the quick run reaches its recall target and writes real plots; bad options exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="the demo extra is not installed")
pytest.importorskip("matplotlib", reason="the demo extra is not installed")
pytest.importorskip("rich", reason="the demo extra is not installed")


def test_quick_demo_reaches_recall_and_writes_the_plots(tmp_path):
    from losskit.demo import DemoConfig, run

    result = run(DemoConfig(out=tmp_path, seed=0, quick=True))
    assert result["recall_at_1"] >= 0.85
    for strategy, numbers in result["multitask"].items():
        assert numbers["accuracy"] > 0.5, strategy  # 10 classes: chance is 0.1
    for name in (
        "triplet_loss.png",
        "multitask_loss.png",
        "task_weights.png",
        "embeddings_pca.png",
    ):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name


def _demo(*args):
    return subprocess.run(
        [sys.executable, "-m", "losskit.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "--device must be 'cpu' or 'cuda' (or 'cuda:N'), got 'tpu'"),
        (["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
        (["--out", "/proc/losskit-demo"], "cannot write to --out '/proc/losskit-demo'"),
        (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    ],
)
def test_bad_options_give_one_line_and_exit_status_2(args, message):
    proc = _demo(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
