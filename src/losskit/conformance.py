"""The conformance check behind ``losskit check``: every registered loss against its oracles.

For each loss, sample and reduction (in float64 and float32) the functional is compared with the
NumPy reference and, where torch has the loss, with ``torch.nn.functional`` (values, and the
gradients of the differentiable inputs under a random upstream gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._dispatch import BackendUnsupportedError, use_backend
from ._registry import LossInfo, Sample, all_losses


@dataclass
class Row:
    """The outcome of checking one loss."""

    name: str
    family: str
    cases: int = 0
    refused: int = 0  # cases the pinned backend's rule refused (not run)
    failures: list[str] = field(default_factory=list)
    ref_abs: float = 0.0
    ref_rel: float = 0.0
    torch_abs: float | None = None
    torch_rel: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def _errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    both_nan = np.isnan(actual) & np.isnan(expected)
    same_inf = np.isinf(actual) & (actual == expected)
    ok = both_nan | same_inf
    if ok.all():
        return 0.0, 0.0
    if np.isnan(actual[~ok]).any() or np.isnan(expected[~ok]).any():
        return math.inf, math.inf
    diff = np.abs(actual[~ok] - expected[~ok])
    rel = diff / np.maximum(np.abs(expected[~ok]), 1e-12)
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def _within(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> bool:
    return actual.shape == expected.shape and bool(
        np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _leaves(sample: Sample, grad_args: tuple[int, ...]) -> Sample:
    args = list(sample.args)
    for k in grad_args:
        args[k] = args[k].detach().clone().requires_grad_(True)
    return replace(sample, args=tuple(args))


def check_loss(info: LossInfo, device: str = "cpu", seed: int = 0, backend: str = "auto") -> Row:
    """Run every sample of ``info`` against its oracles and summarise the errors.

    ``backend`` pins one backend (``use_backend``); a sample its rule refuses is not counted.
    """
    row = Row(info.name, info.family)
    with use_backend(backend):
        _check_samples(info, device, seed, row)
    return row


def _check_samples(info: LossInfo, device: str, seed: int, row: Row) -> None:
    samples = list(info.samples(torch.Generator().manual_seed(seed)))
    for dtype in (torch.float64, torch.float32):
        rtol, atol = info.tolerance(dtype)
        for sample in samples:
            for reduction in info.reductions:
                label = f"{sample.desc or 'sample'} / {reduction} / {str(dtype)[6:]}"
                s = sample.cast(dtype, device).with_reduction(reduction)
                try:
                    _check_case(info, s, rtol, atol, row, label)
                except BackendUnsupportedError:
                    row.refused += 1
                    continue
                except Exception as exc:  # a crash is a failure of this case, not of the run
                    row.failures.append(f"{label}: {type(exc).__name__}: {exc}")
                row.cases += 1


def _check_case(info: LossInfo, s: Sample, rtol: float, atol: float, row: Row, label: str) -> None:
    ours_s = _leaves(s, info.grad_args) if info.differentiable else s
    ours = info.functional(*ours_s.args, **ours_s.kwargs)
    args, kwargs = s.numpy()
    expected = np.asarray(info.reference(*args, **kwargs), dtype=np.float64)
    a, r = _errors(_np(ours), expected)
    row.ref_abs, row.ref_rel = max(row.ref_abs, a), max(row.ref_rel, r)
    if not _within(_np(ours), expected, rtol, atol):
        row.failures.append(f"{label}: reference mismatch (abs {a:.2e}, rel {r:.2e})")
    if info.torch_functional is None or s.torch_kwargs is None:
        return
    theirs_s = _leaves(s, info.grad_args) if info.differentiable else s
    theirs = info.torch_functional(*theirs_s.args, **{**s.kwargs, **s.torch_kwargs})
    pairs = [(_np(ours), _np(theirs), "value")]
    if info.differentiable and info.torch_grad_parity and ours.requires_grad:
        up = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1)).to(ours)
        inputs_o = [ours_s.args[k] for k in info.grad_args]
        inputs_t = [theirs_s.args[k] for k in info.grad_args]
        g_o = torch.autograd.grad(ours, inputs_o, up, allow_unused=True)
        g_t = torch.autograd.grad(theirs, inputs_t, up, allow_unused=True)
        for k, go, gt in zip(info.grad_args, g_o, g_t, strict=True):
            if go is not None and gt is not None:
                pairs.append((_np(go), _np(gt), f"grad of arg {k}"))
    for got, want, what in pairs:
        a, r = _errors(got, want)
        row.torch_abs = max(row.torch_abs or 0.0, a)
        row.torch_rel = max(row.torch_rel or 0.0, r)
        if not _within(got, want, rtol, atol):
            row.failures.append(f"{label}: torch {what} mismatch (abs {a:.2e}, rel {r:.2e})")


def run_checks(
    names: list[str] | None = None,
    family: str | None = None,
    device: str = "cpu",
    backend: str = "auto",
) -> list[Row]:
    """Check the selected losses; with a pinned ``backend``, only the losses that declare it."""
    infos = [i for i in all_losses(family) if names is None or i.name in names]
    if backend != "auto":
        infos = [i for i in infos if backend in i.backend_names]
    return [check_loss(info, device, backend=backend) for info in infos]


def format_table(rows: list[Row]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.1e}"

    header = ("loss", "family", "cases", "ref abs", "ref rel", "torch abs", "torch rel", "result")
    body = [
        (
            r.name,
            r.family,
            str(r.cases),
            num(r.ref_abs),
            num(r.ref_rel),
            num(r.torch_abs),
            num(r.torch_rel),
            ("pass" if r.passed else f"FAIL ({len(r.failures)})")
            + (f", {r.refused} refused" if r.refused else ""),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)
