"""Per-token log-probabilities (and entropies) from hidden states, without the N x V logits.

:func:`token_logprobs` gives ``log_softmax(logits)[token]`` and the entropy of the full
distribution for every position, the quantities DPO, KTO, GRPO and friends are built from. The
logits are made one block of vocabulary columns at a time; the forward keeps three numbers per
row (a running max, sum of exponentials and, for the entropy, sum of ``p (z - max)``), and the
backward recomputes each block, turns it into its gradient and multiplies it into the gradients of
the hidden states, the weight (each block of weight rows written once) and the bias. Two block
buffers are reused by every block (no allocation, no page faults per block), and without
scale, soft cap or temperature the backward makes each block directly as ``z - lse`` (the row's
log-sum-exp rides in the matrix product's ``beta`` term).

On CUDA (and on CPU tensors under ``TRITON_INTERPRET=1`` when pinned) the ``kernel`` backend
runs :mod:`losskit.kernels.token_logprobs`: torch's matrix product per chunk of rows, a Triton
kernel for the statistics and, in the backward, the gradient written over the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import first_order_only, functorch_active
from .._checks import (
    check_bool,
    check_class_indices,
    check_floating,
    check_int,
    check_number,
    check_optional_floating,
    check_same_device,
    check_tensor,
)
from .._dispatch import Backends
from .._precision import compute_dtype
from ..distillation import check_temperature
from ..kernels.token_logprobs.rules import token_logprobs_kernel, token_logprobs_refuses
from ..linear import check_softcap

__all__ = ["token_logprobs"]

# Elements of one block of logits (rows x vocabulary columns): 16 MB of float32. The forward holds
# about three such buffers, the backward four; the weight gradient is the other large buffer.
_BLOCK_ELEMENTS = 1 << 22
_MAX_ROWS = 1 << 14  # rows per row block; more rows than this are processed in several blocks
_MIN_COLS = 128


def _block_cols(rows: int, vocab: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return min(chunk_size, max(vocab, 1))
    return min(max(vocab, 1), max(_MIN_COLS, _BLOCK_ELEMENTS // max(rows, 1)))


def _logits(
    a: torch.Tensor,
    scale: float,
    softcap: float | None,
    temperature: float,
    *,
    owned: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``cap(scale * a) / T`` in the compute dtype, and ``tanh(scale * a / cap)`` if capped.

    ``owned``: ``a`` is a private buffer that may be overwritten.
    """
    z = a.to(compute_dtype(a.dtype))
    owned = owned or z is not a  # a fresh copy may be modified in place
    if scale != 1.0:
        z = z.mul_(scale) if owned else z * scale
        owned = True
    t = None
    if softcap is not None:
        t = torch.tanh(z / softcap)
        z = torch.mul(t, softcap, out=z) if owned else t * softcap
        owned = True
    if temperature != 1.0:
        z = z.div_(temperature) if owned else z / temperature
    return z, t


def _block_logits(
    xr: torch.Tensor,
    wv: torch.Tensor,
    bv: torch.Tensor | None,
    buf: torch.Tensor | None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """``xr wv^T + bv (- shift)`` written into ``buf`` (reused across blocks: no page faults).

    ``shift`` (per row) rides in the matrix product's ``beta`` term when there is no bias, which
    saves a pass over the block. ``buf`` is ``None`` for inputs not in their compute dtype.
    """
    if buf is None:
        a = F.linear(xr, wv, bv)
        return a if shift is None else a.to(compute_dtype(a.dtype)).sub_(shift.unsqueeze(1))
    out = buf[: xr.shape[0] * wv.shape[0]].view(xr.shape[0], wv.shape[0])
    if bv is not None:
        torch.addmm(bv, xr, wv.t(), out=out)
        return out if shift is None else out.sub_(shift.unsqueeze(1))
    if shift is None:
        return torch.mm(xr, wv.t(), out=out)
    return torch.addmm(shift.unsqueeze(1), xr, wv.t(), beta=-1.0, out=out)


def _plain_logits(opts: tuple) -> bool:
    scale, softcap, temperature = opts[:3]
    return scale == 1.0 and softcap is None and temperature == 1.0


class _TokenLogprobsFunction(torch.autograd.Function):
    """Blockwise ``(log p(y), H(p))`` of ``p = softmax(cap(scale * (x W^T + b)) / T)``."""

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
        scale, softcap, temperature, rows, cols, want_entropy = opts
        n, vocab = x.shape[0], w.shape[0]
        dtype = compute_dtype(x.dtype)
        f = {"device": x.device, "dtype": dtype}
        lse = torch.empty(n, **f)
        ent_all = torch.empty(n, **f)  # H(p) of every row (ignored ones too), for the backward
        z_y = torch.zeros(n, **f)
        # Two block buffers reused by every block: logits and their exponentials.
        size = min(rows, n) * min(cols, vocab)
        zbuf = torch.empty(size, **f) if x.dtype == dtype else None
        ebuf = torch.empty(size, **f)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            xr, yr = x[r0:r1], y[r0:r1]
            m = torch.full((r1 - r0,), -torch.inf, **f)
            s = torch.zeros_like(m)
            u = torch.zeros_like(m)
            for v0 in range(0, vocab, cols):
                v1 = min(v0 + cols, vocab)
                a = _block_logits(xr, w[v0:v1], None if b is None else b[v0:v1], zbuf)
                z, _ = _logits(a, scale, softcap, temperature, owned=zbuf is not None)
                del a
                inside = (yr >= v0) & (yr < v1)
                picked = z.gather(1, (yr - v0).clamp(0, v1 - v0 - 1).unsqueeze(1)).squeeze(1)
                z_y[r0:r1] = torch.where(inside, picked, z_y[r0:r1])
                m_new = torch.maximum(m, z.amax(1))
                # A row whose max is still -inf (every logit -inf) would give inf - inf.
                shift = torch.where(torch.isfinite(m_new), m_new, 0.0)
                rescale = torch.exp(m - shift)
                zs = z.sub_(shift.unsqueeze(1))  # z - shift <= 0, in z's buffer (ours)
                if b is not None:  # a -inf bias (a masked entry) would give 0 * -inf below
                    zs.clamp_(min=torch.finfo(dtype).min)
                e = torch.exp(zs, out=ebuf[: zs.numel()].view(zs.shape))
                if want_entropy:
                    # u = sum_v e_v (z_v - shift), relative to the running max: summing e_v z_v
                    # and subtracting from the log-sum-exp loses digits when the logits are large.
                    prev = torch.where(s > 0, (m - shift) * s, 0.0)
                    u = rescale * (u + prev) + zs.mul_(e).sum(1)  # zs is not needed after
                s = s * rescale + e.sum(1)
                m = m_new
                del z, zs, e
            shift = torch.where(torch.isfinite(m), m, 0.0)
            log_s = torch.log(s)
            lse[r0:r1] = shift + log_s
            ent_all[r0:r1] = log_s - u / s
        del zbuf, ebuf
        zero = lse.new_zeros(())
        logp = torch.where(keep, z_y - lse, zero)
        ent = torch.where(keep, ent_all, zero) if want_entropy else torch.zeros_like(lse)
        ctx.save_for_backward(x, w, b, y, keep, lse, ent_all)
        ctx.opts = opts
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*(() if want_entropy else (ent,)))
        return logp, ent

    @staticmethod
    @first_order_only(
        "token_logprobs",
        "compute log_softmax(F.linear(hidden_states, lm_head_weight)).gather(...) instead",
    )
    def backward(ctx, g_logp: torch.Tensor | None, g_ent: torch.Tensor | None):  # type: ignore[override]
        x, w, b, y, keep, lse, ent_all = ctx.saved_tensors
        scale, softcap, temperature, rows, cols, want_entropy = ctx.opts
        needs = ctx.needs_input_grad
        nothing = (None,) * 6
        if g_logp is None and (g_ent is None or not want_entropy):
            return nothing
        if not (needs[0] or needs[1] or needs[2]):
            return nothing
        n, vocab = x.shape[0], w.shape[0]
        dtype = compute_dtype(x.dtype)
        f = {"device": x.device, "dtype": dtype}
        zero = lse.new_zeros(())
        g1 = None if g_logp is None else torch.where(keep, g_logp.to(dtype), zero)
        g2 = (
            None
            if (g_ent is None or not want_entropy)
            else torch.where(keep, g_ent.to(dtype), zero)
        )
        # dz = g1 (onehot(y) - p) - g2 p (z - E[z]) = p * (alpha * (z - lse) + beta) + g1 onehot
        # with alpha = -g2 and beta = -g2 (lse - E[z]) - g1: the block is made as z - lse (the
        # log-probabilities) directly when the logits need no transformation.
        alpha = None if g2 is None else -g2
        beta = torch.zeros_like(lse)
        if g2 is not None:
            beta = beta - g2 * ent_all  # lse - E[z] = H
        if g1 is not None:
            beta = beta - g1
        plain = _plain_logits(ctx.opts)
        factor = scale / temperature
        gx = torch.zeros(x.shape, **f) if needs[0] else None
        gw = torch.empty(w.shape, **f) if needs[1] else None
        gb = torch.empty(vocab, **f) if needs[2] else None
        size = min(rows, n) * min(cols, vocab)
        zbuf = torch.empty(size, **f) if x.dtype == dtype else None
        pbuf = torch.empty(size, **f)
        for v0 in range(0, vocab, cols):
            v1 = min(v0 + cols, vocab)
            wv = w[v0:v1]
            for r0 in range(0, n, rows):
                r1 = min(r0 + rows, n)
                xr = x[r0:r1]
                lse_r = lse[r0:r1]
                bv = None if b is None else b[v0:v1]
                t = None
                if plain:  # the block of log-probabilities z - lse, in the product when possible
                    lp = _block_logits(xr, wv, bv, zbuf, shift=lse_r)
                    if lp.dtype != dtype:
                        lp = lp.to(dtype)
                else:
                    a = _block_logits(xr, wv, bv, zbuf)
                    z, t = _logits(a, scale, softcap, temperature, owned=zbuf is not None)
                    del a
                    lp = z.sub_(lse_r.unsqueeze(1))  # z is ours: a transformation made it
                p = pbuf[: lp.numel()].view(lp.shape)
                torch.exp(lp, out=p)
                if alpha is not None:
                    # A -inf bias (a masked entry) has p = 0 and z - E[z] = -inf: gradient 0.
                    masked = torch.isneginf(lp) if b is not None else None
                    dz = p.mul_(lp.mul_(alpha[r0:r1].unsqueeze(1)).add_(beta[r0:r1].unsqueeze(1)))
                    if masked is not None:
                        dz.masked_fill_(masked, 0.0)
                else:
                    dz = p.mul_(beta[r0:r1].unsqueeze(1))
                del lp
                if g1 is not None:
                    yr = y[r0:r1]
                    inside = (yr >= v0) & (yr < v1)
                    idx = (yr - v0).clamp(0, v1 - v0 - 1).unsqueeze(1)
                    dz.scatter_add_(1, idx, torch.where(inside, g1[r0:r1], zero).unsqueeze(1))
                # through / T, the soft cap (d/dv cap tanh(v / cap) = 1 - tanh^2) and the scale
                if t is not None:
                    dz.mul_(t.square_().neg_().add_(1.0))
                if factor != 1.0:
                    dz.mul_(factor)
                da = dz.to(x.dtype)
                del dz, t
                if gx is not None:
                    if da.dtype == dtype:
                        gx[r0:r1].addmm_(da, wv)
                    else:
                        gx[r0:r1] += (da @ wv).to(dtype)
                if gw is not None:
                    if da.dtype != dtype:
                        block = (da.t() @ xr).to(dtype)
                        if r0 == 0:
                            gw[v0:v1] = block
                        else:
                            gw[v0:v1] += block
                    elif r0 == 0:  # written, not accumulated: no zero fill, no read
                        torch.mm(da.t(), xr, out=gw[v0:v1])
                    else:
                        gw[v0:v1].addmm_(da.t(), xr)
                if gb is not None:
                    part = da.sum(0, dtype=dtype)
                    if r0 == 0:
                        gb[v0:v1] = part
                    else:
                        gb[v0:v1] += part
                del da
        if gw is not None and n == 0:
            gw.zero_()
        if gb is not None and n == 0:
            gb.zero_()
        return (
            None if gx is None else gx.to(x.dtype),
            None if gw is None else gw.to(w.dtype),
            None if gb is None else gb.to(b.dtype),
            None,
            None,
            None,
        )


def _plain(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    y: torch.Tensor,
    keep: torch.Tensor,
    opts: tuple[float, float | None, float, int, int, bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unchunked composition: under torch.func transforms, which cannot see inside the Function."""
    scale, softcap, temperature, _, _, want_entropy = opts
    z, _ = _logits(F.linear(x, w, b), scale, softcap, temperature)
    logp_all = torch.log_softmax(z, dim=1)
    zero = logp_all.new_zeros(())
    logp = torch.where(keep, logp_all.gather(1, y.unsqueeze(1)).squeeze(1), zero)
    if not want_entropy:
        return logp, torch.zeros_like(logp)
    ent = -(torch.exp(logp_all) * logp_all).sum(1)
    return logp, torch.where(keep, ent, zero)


def _chunked_torch(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    y: torch.Tensor,
    keep: torch.Tensor,
    opts: tuple[float, float | None, float, int, int, bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    if functorch_active():
        return _plain(x, w, b, y, keep, opts)
    return _TokenLogprobsFunction.apply(x, w, b, y, keep, opts)


_TOKEN_LOGPROBS = Backends(
    "token_logprobs",
    formula=_chunked_torch,
    kernel=token_logprobs_kernel,
    refuses={"kernel": token_logprobs_refuses},
)


def _check_args(
    hidden_states: object, lm_head_weight: object, tokens: object, lm_head_bias: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    x = check_floating("hidden_states", hidden_states)
    w = check_floating("lm_head_weight", lm_head_weight)
    y = check_tensor("tokens", tokens)
    b = check_optional_floating("lm_head_bias", lm_head_bias)
    check_same_device("lm_head_weight", w, x, "hidden_states")
    check_same_device("tokens", y, x, "hidden_states")
    if b is not None:
        check_same_device("lm_head_bias", b, x, "hidden_states")
    if x.dim() < 1:
        raise ValueError("hidden_states must be (..., H), got a 0-D tensor")
    if w.dim() != 2 or w.shape[1] != x.shape[-1]:
        raise ValueError(
            f"lm_head_weight must be (V, H) with H = {x.shape[-1]} (hidden_states' last "
            f"dimension), got shape {tuple(w.shape)}"
        )
    if w.dtype != x.dtype:
        raise TypeError(
            f"lm_head_weight has dtype {w.dtype} but hidden_states has {x.dtype}; they must match"
        )
    if b is not None and (b.shape != (w.shape[0],) or b.dtype != x.dtype):
        raise ValueError(
            f"lm_head_bias must be ({w.shape[0]},) of dtype {x.dtype}, got shape "
            f"{tuple(b.shape)} and dtype {b.dtype}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor of token ids, got dtype {y.dtype}")
    if tuple(y.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"tokens must have the shape of hidden_states without its last dimension "
            f"{tuple(x.shape[:-1])}, got {tuple(y.shape)}"
        )
    return x, w, y, b


def token_logprobs(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    tokens: torch.Tensor,
    *,
    lm_head_bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    return_entropy: bool = False,
    ignore_index: int = -100,
    shift: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Log-probability of each token (and the entropy at each position) from hidden states.

    With the logits :math:`z = \mathrm{cap}(s\,(h W^\top + b)) / T`, :math:`\mathrm{cap}(v) =
    c\tanh(v / c)` (identity when ``softcap`` is ``None``) and :math:`p = \mathrm{softmax}(z)`:

    .. math::
        \log p(y_t) = z_{y_t} - \log\sum_v e^{z_v}, \qquad
        H_t = -\sum_v p_v \log p_v = \mathrm{lse}(z) - \sum_v p_v z_v

    equal to ``log_softmax(logits, -1).gather(-1, tokens)`` and the entropy of the same softmax,
    but the ``N x V`` logits never exist: vocabulary blocks of about 4M logits (16 MB float32)
    are made and dropped one at a time; the forward keeps three numbers per row, the backward
    recomputes each block (one extra matrix product) and writes each block of the weight gradient
    once. The order of operations is Hugging Face's: ``logit_scale`` (Cohere, Granite), then the
    model's ``final_logit_softcapping`` (Gemma 2), then the sampling ``temperature`` (TRL divides
    the logits by it before its log-softmax).

    Args:
        hidden_states: ``(..., H)`` final hidden states, e.g. ``(B, T, H)``; float32/bfloat16/
            float16/float64.
        lm_head_weight: ``(V, H)``, the output embedding (same dtype).
        tokens: ``(...)`` integer token ids (the hidden states' leading shape).
        lm_head_bias: optional ``(V,)``.
        temperature: :math:`T > 0`.
        softcap: :math:`c > 0` or ``None``.
        logit_scale: :math:`s` (a finite number).
        return_entropy: also return :math:`H_t` (differentiable).
        ignore_index: token value whose position gives 0 (log-prob and entropy) and no gradient.
        shift: predict ``tokens[..., 1:]`` from ``hidden_states[..., :-1, :]`` (the causal-LM
            shift); the outputs then have the leading shape with one position fewer.
        chunk_size: vocabulary columns per block (``None``: about 4M logits per block).

    Returns:
        ``logps`` of shape ``tokens.shape`` (shifted: one position fewer), or ``(logps,
        entropy)``; float32 for float32/float16/bfloat16 inputs, float64 for float64.

    Edge cases: no position (``N = 0``) gives empty outputs and zero gradients; a token outside
    ``[0, V)`` that is not ``ignore_index`` raises ``IndexError`` (a value check). Gradients flow
    to ``hidden_states``, ``lm_head_weight`` and ``lm_head_bias``; they are not differentiable
    again (no double backward).

    Example:
        >>> h = torch.randn(2, 5, 16, requires_grad=True)
        >>> lm_head = torch.randn(100, 16, requires_grad=True)
        >>> ids = torch.randint(100, (2, 5))
        >>> logps, entropy = losskit.lm.token_logprobs(h, lm_head, ids, shift=True, return_entropy=True)
        >>> logps.shape
        torch.Size([2, 4])
        >>> (logps.sum() + 0.01 * entropy.sum()).backward()

    The same quantities as TRL's ``selective_log_softmax`` and ``entropy_from_logits`` (computed
    on ``logits / temperature``) and Liger-Kernel's fused log-prob path; unlike TRL's,
    an ignored position gives exactly 0 rather than the log-probability of token ``-100``'s
    stand-in. On CUDA a Triton kernel does the softmax work of each chunk of rows (one online
    log-sum-exp pass over the vocabulary; the backward writes the gradient over the recomputed
    logits); ``chunk_size`` only sizes the PyTorch path's blocks.
    """
    x, w, y, b = _check_args(hidden_states, lm_head_weight, tokens, lm_head_bias)
    temperature = check_temperature(temperature)
    softcap = check_softcap(softcap)
    logit_scale = check_number("logit_scale", logit_scale)
    if not abs(logit_scale) < float("inf"):
        raise ValueError(f"logit_scale must be a finite number, got {logit_scale!r}")
    return_entropy = check_bool("return_entropy", return_entropy)
    ignore_index = check_int("ignore_index", ignore_index)
    shift = check_bool("shift", shift)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size}")
    if shift:
        if x.dim() < 2:
            raise ValueError(
                "shift=True needs hidden_states with a sequence dimension (..., T, H), got "
                f"shape {tuple(x.shape)}"
            )
        x, y = x[..., :-1, :], y[..., 1:]
    vocab = w.shape[0]
    check_class_indices(y, vocab, ignore_index)
    lead = tuple(y.shape)
    x2, y1 = x.reshape(-1, x.shape[-1]), y.reshape(-1)
    keep = y1 != ignore_index
    safe = torch.where(keep, y1, 0).long()
    rows = min(max(x2.shape[0], 1), _MAX_ROWS)
    opts = (
        logit_scale, softcap, temperature, rows, _block_cols(rows, vocab, chunk_size),
        return_entropy,
    )  # fmt: skip
    logp, ent = _TOKEN_LOGPROBS(x2, w, b, safe, keep, opts)
    logp = logp.reshape(lead)
    return (logp, ent.reshape(lead)) if return_entropy else logp


token_logprobs.backends = _TOKEN_LOGPROBS
