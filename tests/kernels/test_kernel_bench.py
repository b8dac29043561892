"""``losskit bench`` on the CPU: one small case end to end, and a bad case name."""

from __future__ import annotations

import csv

from losskit.bench import CASES, run


def test_bench_runs_a_case_on_cpu_and_writes_the_tables(tmp_path, capsys):
    from losskit._registry import get

    assert run("cpu", "bce_with_logits", str(tmp_path)) == 0
    out = capsys.readouterr().out
    # One row per backend the public function can run on the CPU, each pinned.
    cpu_backends = [
        b for b in get("binary_cross_entropy_with_logits").backend_names if b != "kernel"
    ]
    losskit_rows = {f"losskit [{b}, checks=all]" for b in cpu_backends}
    for row in losskit_rows:
        assert f"| {row} |" in out
    assert "| torch eager |" in out and "torch.compile" in out
    md = (tmp_path / "results.md").read_text()
    assert "BCE with logits" in md
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    timed = [r for r in rows if r["median_ms"]]
    assert {r["contender"] for r in timed} >= {*losskit_rows, "torch eager"}
    assert all(float(r["median_ms"]) > 0 for r in timed)


def test_unknown_case_is_an_error(capsys):
    assert run("cpu", "no_such_case", "unused") == 2
    assert "bce_with_logits" in capsys.readouterr().err
    assert set(CASES) >= {
        "cross_entropy",
        "linear_cross_entropy",
        "sigmoid_focal",
        "batch_hard_triplet",
    }
