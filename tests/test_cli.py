"""The ``losskit`` command line: check, list, and a check that must fail on a wrong loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losskit import cli
from losskit._registry import LossInfo, Sample, register, unregister


def test_check_passes_and_prints_the_table(capsys):
    assert cli.main(["check", "--loss", "cross_entropy", "--loss", "nll_loss"]) == 0
    out = capsys.readouterr().out
    assert "cross_entropy" in out and "nll_loss" in out and "ref abs" in out
    assert "2 losses" in out and "2 passed, 0 failed" in out


@pytest.fixture
def wrong_loss():
    # A functional that is off by 1% from its reference: the check must notice.
    def reference(x, reduction="mean"):
        loss = np.asarray(x, dtype=np.float64) ** 2
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss

    def functional(x, reduction="mean"):
        loss = 1.01 * x**2
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss

    register(
        LossInfo(
            name="_deliberately_wrong",
            family="_test",
            formula="x^2 (off by 1%)",
            functional=functional,
            module=None,
            reference=reference,
            samples=lambda g: [Sample(args=(torch.randn(4, generator=g, dtype=torch.float64),))],
        )
    )
    yield
    unregister("_deliberately_wrong")


def test_check_fails_with_exit_status_1_on_a_wrong_loss(wrong_loss, capsys):
    assert cli.main(["check", "--family", "_test"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "reference mismatch" in out


def test_list_prints_every_loss_with_its_formula(capsys):
    from losskit._registry import all_losses

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for info in all_losses():
        assert info.name in out and info.formula in out


def test_check_with_an_unknown_loss_is_a_usage_error(capsys):
    assert cli.main(["check", "--loss", "no_such_loss"]) == 2
    assert "losskit check: error: unknown --loss 'no_such_loss'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--device", "tpu"], "losskit check: error: --device must be 'cpu' or 'cuda'"),
        (["list", "--family", "nope"], "losskit list: error: unknown --family 'nope'"),
        (["bench", "--device", "tpu"], "losskit bench: error: --device must be"),
        (["bench", "--out", "/proc/losskit-nope"], "losskit bench: error: cannot write to --out"),
        (["demo", "--seed", "-1"], "losskit demo: error: --seed must be in [0, 2**32)"),
        ([], "usage: losskit"),
    ],
)
def test_bad_options_are_one_line_errors_with_status_2_before_any_work(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_with_an_unknown_case_or_device_exits_2(tmp_path, capsys):
    assert cli.main(["bench", "--case", "no_such_case", "--out", str(tmp_path)]) == 2
    assert "unknown --case 'no_such_case'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["bench", "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_list_where_prints_each_layer_with_an_existing_file_and_line(capsys):
    import pathlib

    assert cli.main(["list", "--where", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    layers = dict(line.split(None, 1) for line in out.strip().splitlines())
    for layer in ("functional", "module", "reference", "spec"):
        assert layer in layers, out
    root = pathlib.Path(__file__).resolve().parents[1]
    for layer in ("functional", "module", "reference", "spec"):
        path, line = layers[layer].split()[0].rsplit(":", 1)
        source = (root / path).read_text().splitlines()
        assert 1 <= int(line) <= len(source), (layer, layers[layer])
    # The functional's line is its definition.
    fpath, fline = layers["functional"].rsplit(":", 1)
    assert "def cross_entropy" in (root / fpath).read_text().splitlines()[int(fline) - 1]


def test_list_where_unknown_loss_is_a_usage_error(capsys):
    assert cli.main(["list", "--where", "no_such_loss"]) == 2
    assert "no_such_loss" in capsys.readouterr().err


def test_check_with_a_pinned_backend_checks_only_the_losses_that_declare_it(capsys):
    from losskit._registry import all_losses

    with_formula = [i.name for i in all_losses() if "formula" in i.backend_names]
    assert cli.main(["check", "--backend", "formula", "--family", "gan"]) == 0
    out = capsys.readouterr().out
    gan = [n for n in with_formula if n in {i.name for i in all_losses("gan")}]
    assert f"{len(gan)} losses" in out


def test_bench_parity_suite_times_a_mirror_against_torch(tmp_path, capsys):
    assert (
        cli.main(
            [
                "bench",
                "--suite",
                "torch",
                "--case",
                "mse_loss",
                "--rounds",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = (tmp_path / "parity.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| mse_loss")]
    assert len(rows) == 3  # small with both check levels, large
    assert {r.split("|")[3].strip() for r in rows} == {"all", "shapes"}
    assert all(float(r.split("|")[-2]) > 0 for r in rows)
