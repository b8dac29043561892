"""The elementwise loss of a binary problem on logits, shared by BCE-with-logits and sigmoid focal.

.. math::
    \\ell = \\alpha_t\\,q^\\gamma\\,B,\\quad B = -[\\,p_w\\,y \\log\\sigma(x) + (1 - y)\\log\\sigma(-x)\\,],
    \\quad q = (1 - y)\\,\\sigma(x) + y\\,\\sigma(-x)

(``q = 1 - p_t``; BCE is ``alpha_t = 1``, ``gamma = 0``). Two forms of the same formula:

* :func:`_autograd_terms`, plain tensor ops that autograd differentiates (any order, and a
  gradient for the target or ``pos_weight`` too);
* :class:`_BinaryLogitLoss`, which computes the gradient in closed form during the forward and
  only scales it in the backward. On the CPU (and on CUDA without Triton) every tensor op is a
  pass over memory, and autograd's backward of the focal form's many ops costs about twice their
  forward: this form made sigmoid focal 2.6x faster (forward + backward, 50000 x 80, CPU) and
  BCE-with-logits 1.2x. Under ``create_graph=True`` its backward differentiates
  :func:`_autograd_terms` instead, so higher-order gradients stay exact.

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
    grad_of_constants = y.requires_grad or (pos_weight is not None and pos_weight.requires_grad)
    if torch.is_grad_enabled() and grad_of_constants:
        return _autograd_terms(x, y, pos_weight, alpha, gamma)
    x = x if torch.is_grad_enabled() and x.requires_grad else x.detach()
    return _BinaryLogitLoss.apply(x, y.detach(), pos_weight, alpha, gamma)


def _autograd_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    pos_weight: torch.Tensor | None,
    alpha: float | None,
    gamma: float,
) -> torch.Tensor:
    positive = y * F.logsigmoid(x)
    if pos_weight is not None:
        positive = pos_weight * positive
    loss = -(1.0 - y) * F.logsigmoid(-x) - positive
    if gamma != 0.0:
        # The clamp keeps pow's gradient gamma q^(gamma - 1) finite at q = 0 (a saturated hard
        # label), where dq/dx = 0 too: the product is 0 rather than inf * 0 = NaN.
        q = torch.lerp(torch.sigmoid(x), torch.sigmoid(-x), y)
        loss = q.clamp_min(torch.finfo(q.dtype).tiny).pow(gamma) * loss
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return loss


def _value_and_grad(
    x: torch.Tensor,
    y: torch.Tensor,
    pos_weight: torch.Tensor | None,
    alpha: float | None,
    gamma: float,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``ell`` and, if asked, ``d ell / dx``, in as few passes over memory as the formula allows."""
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
        q = torch.lerp(p, pn, y)
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
        # d q^gamma / dx = gamma q^gamma (1 - 2y) σ(x) σ(-x) / q. At q = 0 (a saturated hard
        # label) σ(x) σ(-x) = 0 too, and the clamp makes the term 0 (for gamma < 1 as well).
        ratio = p.mul_(pn).div_(q.clamp_min_(torch.finfo(q.dtype).tiny))
        dbce += ratio.mul_(bce).mul_((1.0 - 2.0 * y).mul_(gamma))
    return loss, dbce if scale is None else dbce.mul_(scale)


class _BinaryLogitLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        pos_weight: torch.Tensor | None,
        alpha: float | None,
        gamma: float,
    ) -> torch.Tensor:
        loss, grad = _value_and_grad(x, y, pos_weight, alpha, gamma, ctx.needs_input_grad[0])
        ctx.save_for_backward(x, y, pos_weight, grad)
        ctx.alpha, ctx.gamma = alpha, gamma
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y, pos_weight, grad = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the autograd form
            loss = _autograd_terms(x, y, pos_weight, ctx.alpha, ctx.gamma)
            (grad,) = torch.autograd.grad(loss, x, grad_output, create_graph=True)
            return grad, None, None, None, None
        return grad * grad_output, None, None, None, None
