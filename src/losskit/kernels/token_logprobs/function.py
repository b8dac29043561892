"""Autograd Function and launcher of the token log-probability kernel.

Rows are processed in chunks: torch's matrix product makes a chunk's logits (``rows x V`` in the
matmul dtype), the kernel reads them once for the statistics (forward) or turns them into their
own gradient in place (backward, after making them again), and two more products move that
gradient into the hidden states, the weight (accumulated in float32) and the bias. The forward
keeps three float32 numbers per row; no ``N x V`` tensor ever exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton

from ..._autograd import first_order_only
from ..._precision import compute_dtype
from .kernel import token_logprobs_kernel

# Logits per chunk: 2^26 (128 MiB of bfloat16) on CUDA, as Liger-Kernel's fused linear
# cross entropy sizes its chunks to a few times the hidden states. Tests set FORCE_ROWS/FORCE_BLOCK
# to exercise several chunks and vocabulary tiles at small sizes.
CHUNK_ELEMENTS = 1 << 26
MAX_BLOCK = 4096
FORCE_ROWS: int | None = None
FORCE_BLOCK: int | None = None


def chunk_rows(n: int, vocab: int) -> int:
    if FORCE_ROWS is not None:
        return max(1, FORCE_ROWS)
    return max(1, min(n, CHUNK_ELEMENTS // max(vocab, 1)))


def mm_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the logits: autocast's when it is on for the device (as ``F.linear`` would)."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return x.dtype


def _operands(x, w, b, dtype):
    """The matmul operands in ``dtype`` (no copy when they already are)."""
    return x.to(dtype), w.to(dtype), None if b is None else b.to(dtype)


def _launch(logits, y, g1, g2, stats, logp, ent, opts, grad: bool) -> None:
    scale, softcap, temperature = opts[:3]
    rows, n_cols = logits.shape
    if rows == 0:
        return
    block = FORCE_BLOCK or min(triton.next_power_of_2(n_cols), MAX_BLOCK)
    warps = 4 if block <= 1024 else 8 if block <= 4096 else 16
    dummy = stats  # a valid pointer for the arguments a mode does not read
    token_logprobs_kernel[(rows,)](
        logits, *logits.stride(),
        y,
        dummy if g1 is None else g1,
        dummy if g2 is None else g2,
        stats,
        dummy if logp is None else logp,
        dummy if ent is None else ent,
        n_cols, float(scale), 1.0 if softcap is None else float(softcap), 1.0 / temperature,
        BLOCK=block, SOFTCAP=softcap is not None, GRAD=grad, num_warps=warps,
    )  # fmt: skip


class TokenLogprobsKernelFunction(torch.autograd.Function):
    """``(log p(y), H(p))`` per row, by the kernel; same arguments as the PyTorch Function."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        y: torch.Tensor,
        keep: torch.Tensor,
        opts: tuple[float, float | None, float, int, int, bool],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        want_entropy = opts[5]
        n, vocab = x.shape[0], w.shape[0]
        f32 = {"device": x.device, "dtype": torch.float32}
        yk = torch.where(keep, y, -1).contiguous()  # ignored rows: -1, skipped by the kernel
        stats = torch.empty(n, 3, **f32)
        logp = torch.empty(n, **f32)
        ent = torch.empty(n, **f32)
        rows = chunk_rows(n, vocab)
        # The backward runs outside autocast: the dtype of the logits is fixed here, explicitly.
        dtype = mm_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            xm, wm, bm = _operands(x, w, b, dtype)
            for r0 in range(0, n, rows):
                r1 = min(r0 + rows, n)
                logits = F.linear(xm[r0:r1], wm, bm)
                _launch(logits, yk[r0:r1], None, None, stats[r0:r1], logp[r0:r1], ent[r0:r1],
                        opts, grad=False)  # fmt: skip
                del logits
        out_dtype = compute_dtype(x.dtype)
        logp = logp.to(out_dtype)
        ent = ent.to(out_dtype) if want_entropy else torch.zeros_like(logp)
        ctx.save_for_backward(x, w, b, yk, keep, stats)
        ctx.opts = opts
        ctx.mm_dtype = dtype
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*(() if want_entropy else (ent,)))
        return logp, ent

    @staticmethod
    @first_order_only(
        "token_logprobs",
        "compute log_softmax(F.linear(hidden_states, lm_head_weight)).gather(...) instead",
    )
    def backward(ctx, g_logp: torch.Tensor | None, g_ent: torch.Tensor | None):  # type: ignore[override]
        x, w, b, yk, keep, stats = ctx.saved_tensors
        opts = ctx.opts
        needs = ctx.needs_input_grad
        nothing = (None,) * 6
        if not opts[5]:
            g_ent = None
        if (g_logp is None and g_ent is None) or not any(needs[:3]):
            return nothing
        n, vocab = x.shape[0], w.shape[0]
        f32 = {"device": x.device, "dtype": torch.float32}
        zero = torch.zeros((), **f32)
        g1 = zero.expand(n) if g_logp is None else torch.where(keep, g_logp.float(), zero)
        g2 = zero.expand(n) if g_ent is None else torch.where(keep, g_ent.float(), zero)
        g1, g2 = g1.contiguous(), g2.contiguous()
        gx = torch.empty(x.shape, device=x.device, dtype=x.dtype) if needs[0] else None
        gw = torch.zeros(w.shape, **f32) if needs[1] else None
        gb = torch.zeros(vocab, **f32) if needs[2] else None
        rows = chunk_rows(n, vocab)
        with torch.autocast(x.device.type, enabled=False):
            xm, wm, bm = _operands(x, w, b, ctx.mm_dtype)
            for r0 in range(0, n, rows):
                r1 = min(r0 + rows, n)
                xr = xm[r0:r1]
                da = F.linear(xr, wm, bm)
                _launch(da, yk[r0:r1], g1[r0:r1], g2[r0:r1], stats[r0:r1], None, None, opts,
                        grad=True)  # fmt: skip
                if gx is not None:
                    if gx.dtype == da.dtype:
                        torch.mm(da, wm, out=gx[r0:r1])
                    else:
                        gx[r0:r1] = torch.mm(da, wm)
                if gw is not None:
                    # float32 accumulation, as losskit's chunked linear cross entropy: the chunk
                    # is upcast (rows x V), never a V x H temporary per chunk.
                    gw.addmm_(da.t().float(), xr.float())
                if gb is not None:
                    gb += da.sum(0, dtype=torch.float32)
                del da
        return (
            gx,
            None if gw is None else gw.to(w.dtype),
            None if gb is None else gb.to(b.dtype),
            None,
            None,
            None,
        )
