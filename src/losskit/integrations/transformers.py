"""Hugging Face transformers: train any ``*ForCausalLM`` through losskit's fused head.

::

    from losskit.integrations.transformers import apply
    apply(model)   # the loss from hidden states, never the (batch, seq, vocab) logits

After :func:`apply`, a forward with ``labels`` computes its loss with
:func:`losskit.lm.causal_lm_loss` from the decoder's last hidden states and the model's own
``lm_head`` (no logits are made: the output's ``logits`` is ``None``); a forward without labels
(generation, evaluation of logits) runs the model's own code unchanged. The head's options come
from the config: ``final_logit_softcapping`` (Gemma 2/3), ``logit_scale`` (Cohere: multiplies
the logits) and ``logits_scaling`` (Granite: divides them). ``num_items_in_batch``,
``ignore_index`` and ``shift_labels`` are read from the keyword arguments as transformers'
``ForCausalLMLoss`` reads them, and the forward keeps the model's signature (with ``**kwargs``),
so ``Trainer`` still passes ``num_items_in_batch`` under gradient accumulation.
:func:`revert` restores the model's own forward. Requires ``pip install 'losskit[transformers]'``
only to build the model; this module imports nothing from transformers until :func:`apply`.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any

import torch
from torch import nn

from ..lm.causal import causal_lm_loss

__all__ = ["apply", "is_applied", "revert"]

_MARK = "__losskit_original_forward__"
# Arguments of the causal-LM forward that the decoder does not take.
_HEAD_ONLY = ("labels", "logits_to_keep", "num_logits_to_keep")


def _head_options(config: Any) -> dict[str, float | None]:
    """``softcap`` and ``logit_scale`` from a model config (None/1.0 when absent)."""
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)  # Cohere: logits * logit_scale
    if scale is None and getattr(config, "logits_scaling", None):  # Granite: logits / scaling
        scale = 1.0 / float(config.logits_scaling)
    return {"softcap": None if softcap is None else float(softcap),
            "logit_scale": 1.0 if scale is None else float(scale)}  # fmt: skip


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a transformers *ForCausalLM module, got {type(model)}")
    head = getattr(model, "lm_head", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"{type(model).__name__} has no plain nn.Linear lm_head (found "
            f"{type(head).__name__}); apply() fuses only that head"
        )
    prefix = getattr(model, "base_model_prefix", None)
    decoder = getattr(model, prefix, None) if isinstance(prefix, str) else None
    if not isinstance(decoder, nn.Module):
        raise TypeError(
            f"{type(model).__name__} has no decoder at its base_model_prefix "
            f"({prefix!r}); apply() needs a *ForCausalLM built on one"
        )
    if getattr(model, "config", None) is None:
        raise TypeError(f"{type(model).__name__} has no config")
    return decoder


def _output(model: nn.Module, loss: torch.Tensor, outputs: Any) -> Any:
    """A ``CausalLMOutputWithPast`` (``logits=None``) carrying the decoder's other outputs."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    carried = {}
    if isinstance(outputs, dict):
        carried = {k: v for k, v in outputs.items() if k in names and k not in ("loss", "logits")}
    return CausalLMOutputWithPast(loss=loss, logits=None, **carried)


def _split(signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple[dict, dict]:
    """The named arguments of a forward call, and the contents of its ``**kwargs``."""
    params = dict(signature.bind_partial(*args, **kwargs).arguments)
    extra: dict = {}
    for name, p in signature.parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD and name in params:
            extra = dict(params.pop(name))
    return params, extra


def _fused_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The patched forward (bound to the model; it reads the class's forward at each call)."""
    original = types.MethodType(type(self).forward, self)
    params, extra = _split(inspect.signature(original), args, kwargs)
    labels, shift_labels = params.get("labels"), extra.get("shift_labels")
    keep = params.get("logits_to_keep", params.get("num_logits_to_keep", 0))
    if (labels is None and shift_labels is None) or (isinstance(keep, int) and keep != 0):
        return original(*args, **kwargs)  # logits wanted: the model's own code
    decoder_args = {k: v for k, v in params.items() if k not in _HEAD_ONLY}
    # As transformers does, every extra keyword goes to the decoder too (it ignores the loss's)
    # and the loss reads its own.
    outputs = getattr(self, self.base_model_prefix)(**decoder_args, **extra)
    hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
    head = self.lm_head
    target = labels if shift_labels is None else shift_labels
    loss = causal_lm_loss(
        hidden,
        head.weight,
        target.to(hidden.device),
        lm_head_bias=head.bias,
        shift=shift_labels is None,
        ignore_index=extra.get("ignore_index", -100),
        num_items_in_batch=extra.get("num_items_in_batch"),
        **_head_options(self.config),
    )
    return _output(self, loss, outputs)


def apply(model: nn.Module) -> nn.Module:
    """Make ``model`` (a ``*ForCausalLM`` with a plain ``lm_head``) compute its training loss
    with :func:`losskit.lm.causal_lm_loss`; returns the model. Applying twice changes nothing.

    Raises ``TypeError`` when the model has no ``nn.Linear`` ``lm_head``, no decoder at its
    ``base_model_prefix`` or a forward without ``**kwargs``.

    Example (needs transformers, so not run by the docstring tests)::

        model = apply(AutoModelForCausalLM.from_config(config))
        model(input_ids=ids, labels=ids).loss.backward()   # no logits made
        Trainer(model=model, args=args, train_dataset=data).train()
    """
    _check_model(model)
    if is_applied(model):
        return model
    signature = inspect.signature(type(model).forward)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        raise TypeError(
            f"{type(model).__name__}.forward takes no **kwargs: it cannot receive "
            "num_items_in_batch, so apply() would change how its loss is normalised"
        )
    # A copy of the function per model, carrying the model's own signature: Trainer inspects
    # model.forward for **kwargs (and for the dataset columns it keeps). Bound as a method, so
    # copy.deepcopy(model) gets a forward bound to the copy.
    fn = types.FunctionType(
        _fused_forward.__code__, _fused_forward.__globals__, "forward",
        _fused_forward.__defaults__, _fused_forward.__closure__,
    )  # fmt: skip
    fn.__signature__ = signature
    fn.__doc__ = type(model).forward.__doc__
    setattr(fn, _MARK, True)
    model.__dict__["forward"] = types.MethodType(fn, model)
    return model


def is_applied(model: nn.Module) -> bool:
    """Whether :func:`apply` has patched ``model``."""
    fwd = model.__dict__.get("forward")
    return fwd is not None and hasattr(getattr(fwd, "__func__", fwd), _MARK)


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`apply`: the model's own forward (and logits) again; returns the model."""
    if is_applied(model):
        del model.__dict__["forward"]
    return model
