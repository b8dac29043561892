"""The kernel switch: per-thread modes, the context manager, fall-backs through the public losses,
and ``import losskit`` without triton."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

pytest.importorskip("triton")

import losskit
from losskit import _dispatch
from losskit.kernels import KernelUnsupportedError, get_kernel_mode, use_kernels


def test_mode_is_per_thread_set_at_once_and_the_context_manager_restores_it():
    assert get_kernel_mode() == "auto"
    with use_kernels("never"):
        assert get_kernel_mode() == "never"
        with use_kernels("always"):
            assert get_kernel_mode() == "always"
        assert get_kernel_mode() == "never"
    assert get_kernel_mode() == "auto"
    use_kernels("never")  # takes effect without a with-block
    try:
        assert get_kernel_mode() == "never"
        seen = []
        thread = threading.Thread(target=lambda: seen.append(get_kernel_mode()))
        thread.start()
        thread.join()
        assert seen == ["auto"]  # another thread keeps its own mode
    finally:
        use_kernels("auto")


@pytest.mark.parametrize("bad", ["sometimes", None, 1])
def test_unknown_mode_raises(bad):
    with pytest.raises(ValueError, match=r"use_kernels\(\) got"):
        use_kernels(bad)
    assert get_kernel_mode() == "auto"


def _grad_fn(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


def test_auto_uses_torch_for_cpu_tensors_and_never_always_does():
    x, y = torch.randn(4, 3, requires_grad=True), torch.rand(4, 3)
    t = torch.tensor([0, 1, 2, 0])
    for mode in ("auto", "never"):
        with use_kernels(mode):
            assert "CrossEntropyFunction" not in _grad_fn(losskit.cross_entropy(x, t))
            out = losskit.binary_cross_entropy_with_logits(x, y)
            assert "BinaryLossFunction" not in _grad_fn(out)
            assert "KLDivFunction" not in _grad_fn(losskit.kl_div(x.log_softmax(1), y))


def test_always_runs_the_kernel_on_cpu_under_the_interpreter(kernels):
    x = torch.randn(4, 3, requires_grad=True)
    out = losskit.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    assert "CrossEntropyFunction" in _grad_fn(out)
    with losskit.use_backend("kernel"):  # pinning the backend does the same
        assert "CrossEntropyFunction" in _grad_fn(
            losskit.cross_entropy(x, torch.tensor([1, 2])[[0, 1, 0, 1]])
        )


def test_always_without_the_interpreter_names_the_device(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with use_kernels("always"), pytest.raises(KernelUnsupportedError, match="tensors on cpu"):
        losskit.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_missing_triton_is_reported_under_always(monkeypatch):
    monkeypatch.setattr(_dispatch, "kernels_available", lambda: False)
    with (
        use_kernels("always"),
        pytest.raises(KernelUnsupportedError, match=r"triton is not installed"),
    ):
        losskit.kl_div(torch.randn(3), torch.rand(3))
    with use_kernels("auto"):
        losskit.kl_div(torch.randn(3), torch.rand(3))


def test_functorch_transforms_use_the_pytorch_path(kernels):
    x = torch.randn(3, 4)
    y = torch.rand(3, 4)

    def loss(z):
        with use_kernels("auto"):  # CPU + auto, and a transform is active: torch's op
            return losskit.binary_cross_entropy_with_logits(z, y)

    torch.func.grad(loss)(x)
    with pytest.raises(KernelUnsupportedError, match=r"torch\.func"):
        torch.func.grad(lambda z: losskit.binary_cross_entropy_with_logits(z, y))(x)


def test_kernel_unsupported_error_is_the_seams_error():
    assert KernelUnsupportedError is losskit.BackendUnsupportedError


def test_import_losskit_works_without_triton(tmp_path):
    # A meta-path hook makes `import triton` fail, as on a machine without the [kernels] extra.
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ImportError("no triton here")
        return None
sys.meta_path.insert(0, Block())
import torch, losskit
from losskit.kernels import dispatch, use_kernels
assert not dispatch.kernels_available()
x = torch.randn(4, 3, requires_grad=True)
losskit.cross_entropy(x, torch.tensor([0, 1, 2, 0])).backward()
with use_kernels("always"):
    try:
        losskit.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    except dispatch.KernelUnsupportedError as e:
        assert "triton is not installed" in str(e)
    else:
        raise SystemExit("expected KernelUnsupportedError")
assert "triton" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
