"""Under ``set_checks("shapes")`` a loss reads no tensor value on the host.

On CUDA such a read (``bool(t)``, ``t.item()``, ``t.tolist()``, ``int(t)``, ``t.nonzero()``) is a
host synchronisation that stalls the stream. With no GPU at hand, this runs every registered loss
(forward and backward) on the CPU with those methods made to raise, so that a Python-level read
on a path CUDA also takes is found here. Reads that only the CPU makes by design are stubbed to
their CUDA answer (``_is_one``: the upstream gradient is read on the CPU only; ``_drop_ignored``:
the linear heads skip ignored rows on CUDA only under the value checks). torch's own C++
ops are not seen by this test (their syncs are torch's, e.g. CTC copies the lengths to the host).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import losskit
from losskit import _chunked_linear, linear
from losskit._registry import all_losses
from registry_helpers import samples_of, upstream_like, with_grad

_READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "nonzero", "numpy")

# Losses whose output size or work depends on the data by design, with the read it makes.
_DATA_DEPENDENT = {
    # Groups of equal labels are padded to the largest group's size (int(counts.max())).
    "triplet_batch_hard": "the largest label group's size",
}


class HostRead(AssertionError):
    pass


@contextlib.contextmanager
def _no_host_reads():
    saved = {name: torch.Tensor.__dict__.get(name) for name in _READS}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f"Tensor.{name} read a value on the host")

        return read

    for name in _READS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, method in saved.items():
            if method is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)


def _params():
    return [
        pytest.param(i, id=i.name)
        for i in all_losses()
        if i.compiles_whole and i.name not in _DATA_DEPENDENT
    ]


@pytest.mark.parametrize("info", _params())
def test_no_host_read_under_shape_checks(info, monkeypatch):
    # The CPU-only reads, stubbed to what they answer on CUDA.
    for module in (_chunked_linear, losskit.lm.distill):
        if hasattr(module, "_is_one"):
            monkeypatch.setattr(module, "_is_one", lambda go: False)
    monkeypatch.setattr(linear, "_drop_ignored", lambda x: losskit.get_checks() == "all")
    sample = samples_of(info)[0].cast(torch.float32)
    if info.differentiable:
        sample = with_grad(sample, info.grad_args)
    with losskit.set_checks("shapes"), _no_host_reads():
        out = info.functional(*sample.args, **sample.kwargs)
        if info.differentiable and out.requires_grad:
            inputs = [sample.args[k] for k in info.grad_args]
            torch.autograd.grad(out, inputs, upstream_like(out), allow_unused=True)


def test_the_probe_sees_a_read():
    with pytest.raises(HostRead), _no_host_reads():
        bool(torch.ones(()) > 0)


def test_data_dependent_losses_are_registered():
    names = {i.name for i in all_losses()}
    assert set(_DATA_DEPENDENT) <= names
