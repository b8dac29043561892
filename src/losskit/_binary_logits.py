"""The elementwise loss of a binary problem on logits, shared by BCE-with-logits and sigmoid focal.

.. math::
    \\ell = \\alpha_t\\,q^\\gamma\\,B,\\quad B = -[\\,p_w\\,y \\log\\sigma(x) + (1 - y)\\log\\sigma(-x)\\,],
    \\quad q = (1 - y)\\,\\sigma(x) + y\\,\\sigma(-x)

(``q = 1 - p_t``; BCE is ``alpha_t = 1``, ``gamma = 0``).

:class:`_BinaryLogitLoss` computes the gradient with respect to ``x`` in closed form during the
forward and only scales it in the backward. On the CPU (and on CUDA without Triton) every tensor
op is a pass over memory, and autograd's backward of the focal formula's many ops costs about
twice their forward: this made sigmoid focal 2.6x faster (forward + backward, 50000 x 80, CPU)
and BCE-with-logits 1.2x. Under ``create_graph=True`` the backward recomputes the closed form
with autograd recording, so higher-order gradients stay exact; ``torch.func`` transforms work
through it (a generated vmap rule and a ``jvp``). Only BCE's gradient with respect to the target
or ``pos_weight`` (which torch's BCE-with-logits also gives for the target) goes through plain
autograd, :func:`_bce_terms`.

Both take ``log σ(±x)`` from ``logsigmoid`` and ``σ(±x)`` separately (never ``1 - σ(x)``): the loss
and its gradient keep their relative precision where they are tiny (``x = -20``, ``y = 0``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def binary_logit_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    alpha: float | None = None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """Unreduced ``alpha_t * q**gamma * B`` (module docstring); ``alpha=None`` means ``alpha_t = 1``.

    ``x``, ``y`` (and ``pos_weight``, broadcastable to ``x``) share one floating dtype.
    """
    if not torch.is_grad_enabled():
        return _value_and_grad(x, y, pos_weight, alpha, gamma, need_grad=False)[0]
    bce = gamma == 0.0 and alpha is None
    if bce and (y.requires_grad or (pos_weight is not None and pos_weight.requires_grad)):
        return _bce_terms(x, y, pos_weight)
    if not x.requires_grad:
        return _value_and_grad(x, y, pos_weight, alpha, gamma, need_grad=False)[0]
    loss, _ = _BinaryLogitLoss.apply(x, y, pos_weight, alpha, gamma)  # y: a constant here
    return loss


def _bce_terms(x: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
    positive = y * F.logsigmoid(x)
    if pos_weight is not None:
        positive = pos_weight * positive
    return -(1.0 - y) * F.logsigmoid(-x) - positive


def _value_and_grad(
    x: torch.Tensor,
    y: torch.Tensor,
    pos_weight: torch.Tensor | None,
    alpha: float | None,
    gamma: float,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``ell`` and, if asked, ``d ell / dx``, in as few passes over memory as the formula allows.

    In-place ops touch only its own temporaries, so autograd can also record it (the
    ``create_graph`` backward), and each one with a tensor operand writes to a temporary that
    depends on both ``x`` and ``y``, so that ``torch.func.vmap`` can batch either alone.
    """
    # lerp(a, b, y) = a + y (b - a) returns a at y = 0 and b at y = 1 exactly, so hard labels lose
    # nothing to cancellation.
    log_p, log_pn = F.logsigmoid(x), F.logsigmoid(-x)
    if pos_weight is not None:
        log_p = log_p * pos_weight
    bce = torch.lerp(log_pn, log_p, y).neg_()
    if gamma == 0.0 and alpha is None and not need_grad:
        return bce, None
    p, pn = torch.sigmoid(x), torch.sigmoid(-x)
    scale = None  # alpha_t q^gamma, when it is not 1
    if gamma != 0.0:
        # q = 0 only for a saturated hard label, where σ(x) σ(-x) = 0 as well: the clamp makes
        # the ratio below 0 there (and q^gamma stays what it is).
        q = torch.lerp(p, pn, y).clamp_min_(torch.finfo(x.dtype).tiny)
        scale = q.pow(gamma)
    if alpha is not None:
        alpha_t = (y * (2.0 * alpha - 1.0)).add_(1.0 - alpha)
        scale = alpha_t if scale is None else scale.mul_(alpha_t)
    loss = bce if scale is None else bce * scale
    if not need_grad:
        return loss, None
    # dB/dx = (1 - y) σ(x) - p_w y σ(-x)
    dbce = torch.lerp(p, (pn if pos_weight is None else pn * pos_weight).neg(), y)
    if gamma != 0.0:
        # d q^gamma / dx = gamma q^gamma (1 - 2y) σ(x) σ(-x) / q
        dbce += (bce * ((1.0 - 2.0 * y) * gamma)).mul_(p).mul_(pn).div_(q)
    return loss, dbce if scale is None else dbce.mul_(scale)


class _BinaryLogitLoss(torch.autograd.Function):
    """``(loss, d loss / dx)`` of the input's ``x``; the second output is not differentiable.

    In the ``setup_context`` form with a generated vmap rule and a ``jvp``, so that
    ``torch.func`` (grad, vmap, jacrev, jacfwd, hessian) works through it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        y: torch.Tensor,
        pos_weight: torch.Tensor | None,
        alpha: float | None,
        gamma: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _value_and_grad(x, y, pos_weight, alpha, gamma, need_grad=True)  # type: ignore[return-value]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, y, pos_weight, alpha, gamma = inputs
        grad = output[1]
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(x, y, pos_weight, grad)
        ctx.save_for_forward(grad)
        ctx.alpha, ctx.gamma = alpha, gamma

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _: torch.Tensor) -> tuple[Any, ...]:
        x, y, pos_weight, grad = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True (also under torch.func's grad, jacrev, hessian): the same closed
            # form again, now recorded by autograd, so that the gradient can be differentiated.
            grad = _value_and_grad(x, y, pos_weight, ctx.alpha, ctx.gamma, need_grad=True)[1]
        return grad * grad_loss, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor, *_: Any) -> tuple[torch.Tensor, None]:
        (grad,) = ctx.saved_tensors
        return grad * x_t, None
