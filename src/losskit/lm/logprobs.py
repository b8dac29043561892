"""Per-token log-probabilities (and entropies) from hidden states, without the N x V logits.

:func:`token_logprobs` gives ``log_softmax(logits)[token]`` and the entropy of the full
distribution for every position, the quantities DPO, KTO, GRPO and friends are built from. The
logits are made one block of vocabulary columns at a time; the forward keeps three numbers per
row (a running max, sum of exponentials and, for the entropy, sum of ``p * z``), and the backward
recomputes each block, turns it into its gradient and multiplies it into the gradients of the
hidden states, the weight (each block of weight rows written once) and the bias.
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
    a: torch.Tensor, scale: float, softcap: float | None, temperature: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``cap(scale * a) / T`` in the compute dtype, and ``tanh(scale * a / cap)`` if capped."""
    z = a.to(compute_dtype(a.dtype))
    owned = z is not a  # a fresh copy may be modified in place
    if scale != 1.0:
        z = z.mul_(scale) if owned else z * scale
        owned = True
    t = None
    if softcap is not None:
        t = torch.tanh(z / softcap)
        z = t * softcap
        owned = True
    if temperature != 1.0:
        z = z.div_(temperature) if owned else z / temperature
    return z, t


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
        lse = torch.empty(n, device=x.device, dtype=dtype)
        mean_z = torch.empty(n, device=x.device, dtype=dtype)  # E_p[z], for the entropy
        z_y = torch.zeros(n, device=x.device, dtype=dtype)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            xr, yr = x[r0:r1], y[r0:r1]
            m = torch.full((r1 - r0,), -torch.inf, device=x.device, dtype=dtype)
            s = torch.zeros_like(m)
            u = torch.zeros_like(m)
            for v0 in range(0, vocab, cols):
                v1 = min(v0 + cols, vocab)
                a = F.linear(xr, w[v0:v1], None if b is None else b[v0:v1])
                z, _ = _logits(a, scale, softcap, temperature)
                del a
                inside = (yr >= v0) & (yr < v1)
                picked = z.gather(1, (yr - v0).clamp(0, v1 - v0 - 1).unsqueeze(1)).squeeze(1)
                z_y[r0:r1] = torch.where(inside, picked, z_y[r0:r1])
                m_new = torch.maximum(m, z.amax(1))
                # A row whose max is still -inf (every logit -inf) would give inf - inf.
                shift = torch.where(torch.isfinite(m_new), m_new, 0.0)
                rescale = torch.exp(m - shift)
                e = torch.sub(z, shift.unsqueeze(1)).exp_()
                s = s * rescale + e.sum(1)
                if want_entropy:  # sum_v e z as a batched dot product: no e * z buffer
                    u = u * rescale + torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1)
                m = m_new
                del z, e
            shift = torch.where(torch.isfinite(m), m, 0.0)
            lse[r0:r1] = shift + torch.log(s)
            mean_z[r0:r1] = u / s
        zero = lse.new_zeros(())
        logp = torch.where(keep, z_y - lse, zero)
        ent = torch.where(keep, lse - mean_z, zero) if want_entropy else torch.zeros_like(lse)
        ctx.save_for_backward(x, w, b, y, keep, lse, mean_z)
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
        x, w, b, y, keep, lse, mean_z = ctx.saved_tensors
        scale, softcap, temperature, rows, cols, want_entropy = ctx.opts
        needs = ctx.needs_input_grad
        nothing = (None,) * 6
        if g_logp is None and (g_ent is None or not want_entropy):
            return nothing
        n, vocab = x.shape[0], w.shape[0]
        dtype = compute_dtype(x.dtype)
        zero = lse.new_zeros(())
        g1 = None if g_logp is None else torch.where(keep, g_logp.to(dtype), zero)
        g2 = (
            None
            if (g_ent is None or not want_entropy)
            else torch.where(keep, g_ent.to(dtype), zero)
        )
        gx = torch.zeros(x.shape, device=x.device, dtype=dtype) if needs[0] else None
        gw = torch.empty(w.shape, device=w.device, dtype=dtype) if needs[1] else None
        gb = torch.empty(vocab, device=w.device, dtype=dtype) if needs[2] else None
        for v0 in range(0, vocab, cols):
            v1 = min(v0 + cols, vocab)
            wv = w[v0:v1]
            for r0 in range(0, n, rows):
                r1 = min(r0 + rows, n)
                xr = x[r0:r1]
                a = F.linear(xr, wv, None if b is None else b[v0:v1])
                z, t = _logits(a, scale, softcap, temperature)
                del a
                # dz = g1 (onehot(y) - p) - g2 p (z - E[z])
                p = torch.sub(z, lse[r0:r1].unsqueeze(1)).exp_()
                if g2 is not None:
                    # -(g1 + g2 (z - E[z])) = (-g2) z + (g2 E[z] - g1), in z's buffer (ours)
                    c = g2[r0:r1] * mean_z[r0:r1]
                    if g1 is not None:
                        c = c - g1[r0:r1]
                    coef = z.mul_(-g2[r0:r1].unsqueeze(1)).add_(c.unsqueeze(1))
                    dz = p.mul_(coef)
                else:
                    dz = p.mul_(-g1[r0:r1].unsqueeze(1))
                del z
                if g1 is not None:
                    yr = y[r0:r1]
                    inside = (yr >= v0) & (yr < v1)
                    idx = (yr - v0).clamp(0, v1 - v0 - 1).unsqueeze(1)
                    dz.scatter_add_(1, idx, torch.where(inside, g1[r0:r1], zero).unsqueeze(1))
                # through / T, the soft cap (d/dv cap tanh(v / cap) = 1 - tanh^2) and the scale
                factor = scale / temperature
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


_TOKEN_LOGPROBS = Backends("token_logprobs", formula=_chunked_torch)


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
    stand-in. The CUDA path is the same blockwise PyTorch code (no Triton kernel yet).
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
