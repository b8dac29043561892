"""``losskit bench`` on the CPU: one small case end to end, and a bad case name."""

from __future__ import annotations

import csv

from losskit.bench import CASES, run


def test_bench_runs_a_case_on_cpu_and_writes_the_tables(tmp_path, capsys):
    assert run("cpu", "bce_with_logits", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "| losskit |" in out and "| torch eager |" in out and "torch.compile" in out
    md = (tmp_path / "results.md").read_text()
    assert "BCE with logits" in md
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    timed = [r for r in rows if r["median_ms"]]
    assert {r["contender"] for r in timed} >= {"losskit", "torch eager"}
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
