"""Perceptual (feature-space) loss through any user feature extractor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .._checks import check_floating, check_range, check_same_shape
from .._precision import upcast
from .._reduction import reduce
from ._base import Loss

__all__ = ["PerceptualLoss"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _AllLayersCaptured(Exception):
    """Raised by the last forward hook to skip the rest of the extractor (its output is unused)."""


def _squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b) ** 2


def _absolute_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs()


_CRITERIA: dict[str, Criterion] = {"mse": _squared_error, "l1": _absolute_error}


class PerceptualLoss(Loss):
    r"""Distance between the features of ``input`` and ``target`` at named layers of an extractor.

    For layers :math:`l` with weights :math:`w_l`, features :math:`\phi_l` and an element-wise
    criterion :math:`c` (squared or absolute difference), the loss of sample :math:`n` is

    .. math::
        \ell_n = \sum_l w_l \, \frac{1}{|\phi_l|} \sum_{j}
                 c\bigl(\phi_l(x)_{n,j}, \phi_l(y)_{n,j}\bigr)

    the mean over the feature elements of each sample (:math:`|\phi_l| = C_l H_l W_l` for conv
    features), as the feature reconstruction loss of Johnson et al. ``reduction`` then takes the
    mean (default) or sum over the batch, or returns :math:`(\ell_n)` of shape ``(N,)``.

    How features are taken: forward hooks are registered on the named sub-modules for the duration
    of one call and removed afterwards (the extractor is left without hooks). ``input`` and
    ``target`` go through the extractor in two separate passes, the target's under
    ``torch.no_grad()``: no graph is kept for the target (less memory than one concatenated pass),
    no gradient reaches ``target``, and batch-dependent layers cannot mix the two. Each pass stops
    as soon as every requested layer has produced its output (the rest of the network, e.g. a
    classifier head, is not run). A layer called more than once in a pass contributes its first
    output.

    The extractor is frozen **in place**: ``requires_grad_(False)`` on all of its parameters and
    ``eval()`` mode, kept even when the loss's ``.train()`` is called (dropout stays off, batch
    normalisation uses and does not update its running statistics). Pass a copy if you also train
    the extractor elsewhere (e.g. discriminator feature matching). It is registered as a sub-module,
    so ``.to()``/``.half()`` move it with the loss and its (frozen) weights appear in
    ``state_dict()``; ``[p for p in loss.parameters() if p.requires_grad]`` is empty.

    Args:
        feature_extractor: any ``nn.Module`` mapping a batch ``(N, ...)`` to anything; only the
            hooked layers' outputs are used (each a tensor with batch dimension ``N``).
        layers: a name or a sequence of names from ``feature_extractor.named_modules()`` (``""`` is
            the extractor itself, i.e. its output). Unknown names raise ``ValueError`` listing the
            available ones.
        layer_weights: ``None`` (1 for every layer), a sequence of finite numbers ``>= 0`` (one
            per layer) or a mapping from layer name to weight (every layer named).
        criterion: ``"mse"`` (squared difference), ``"l1"`` (absolute difference), or a callable
            ``(input_features, target_features) -> tensor`` returning an unreduced tensor whose
            first dimension is the batch (e.g. ``functools.partial(F.smooth_l1_loss,
            reduction="none")``); it is averaged over its non-batch dimensions.
        reduction: ``"none"`` (shape ``(N,)``), ``"mean"`` or ``"sum"`` over the batch.

    Shape:
        ``input`` and ``target``: the same shape ``(N, ...)`` (what the extractor accepts).

    Example:
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU()
        ... )
        >>> loss = losskit.nn.PerceptualLoss(net, ["1", "3"], layer_weights=[1.0, 0.5])
        >>> generated = torch.rand(2, 3, 16, 16, requires_grad=True)
        >>> loss(generated, torch.rand(2, 3, 16, 16)).backward()

        With torchvision, a pretrained VGG is the classic extractor:
        ``PerceptualLoss(torchvision.models.vgg16(weights="DEFAULT").features, ["3", "8", "15"])``.

    Reference: Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
    Super-Resolution", ECCV 2016 (the feature reconstruction loss).
    """

    def __init__(
        self,
        feature_extractor: nn.Module,
        layers: str | Sequence[str],
        layer_weights: Sequence[float] | Mapping[str, float] | None = None,
        criterion: str | Criterion = "mse",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if not isinstance(feature_extractor, nn.Module):
            raise TypeError(
                f"feature_extractor must be an nn.Module, got {type(feature_extractor).__name__}"
            )
        self.layers = _check_layers(layers, feature_extractor)
        self.layer_weights = _check_layer_weights(layer_weights, self.layers)
        self.criterion_name, self._criterion = _check_criterion(criterion)
        feature_extractor.requires_grad_(False)
        self.feature_extractor = feature_extractor.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Set the loss's mode; the feature extractor stays in eval mode regardless."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        input = check_floating("input", input)
        target = check_floating("target", target)
        check_same_shape("input", input, "target", target)
        if input.dim() == 0:
            raise ValueError("input must have a batch dimension (N, ...), got a 0-D tensor")
        n = input.shape[0]
        input_features = self._features(input)
        with torch.no_grad():
            target_features = self._features(target)
        terms = [
            weight * self._layer_loss(name, input_features[name], target_features[name], n)
            for name, weight in zip(self.layers, self.layer_weights, strict=True)
        ]
        total = terms[0]  # layers is never empty (checked in __init__)
        for term in terms[1:]:
            total = total + term
        return reduce(total, self.reduction).to(input.dtype)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.feature_extractor.named_modules())
        wanted = len(self.layers)

        def hook_for(name: str):
            def hook(module: nn.Module, args: object, output: object) -> None:
                if name in captured:  # a module called twice: keep its first output
                    return
                if not isinstance(output, torch.Tensor):
                    raise TypeError(
                        f"layer {name!r} returned {type(output).__name__}, expected a tensor"
                    )
                captured[name] = output
                if len(captured) == wanted:
                    raise _AllLayersCaptured

            return hook

        handles = [modules[name].register_forward_hook(hook_for(name)) for name in self.layers]
        try:
            self.feature_extractor(x)
        except _AllLayersCaptured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.layers if name not in captured]
        if missing:
            raise ValueError(
                f"layers {missing} were not called in the extractor's forward pass; "
                "name modules that its forward() uses"
            )
        return captured

    def _layer_loss(
        self, name: str, feat: torch.Tensor, target_feat: torch.Tensor, n: int
    ) -> torch.Tensor:
        if feat.dim() == 0 or feat.shape[0] != n:
            raise ValueError(
                f"features of layer {name!r} must have the batch size {n} as first dimension, "
                f"got shape {tuple(feat.shape)}"
            )
        out = self._criterion(upcast(feat), upcast(target_feat))
        if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != n:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"criterion must return an unreduced tensor with batch size {n} first, "
                f"got {shape} for layer {name!r}"
            )
        return out.reshape(n, -1).mean(1)

    def extra_repr(self) -> str:
        return (
            f"layers={list(self.layers)}, layer_weights={list(self.layer_weights)}, "
            f"criterion={self.criterion_name!r}, {super().extra_repr()}"
        )


def _check_layers(layers: object, extractor: nn.Module) -> tuple[str, ...]:
    names = (layers,) if isinstance(layers, str) else layers
    if not isinstance(names, Sequence) or not all(isinstance(x, str) for x in names):
        raise TypeError(f"layers must be a layer name or a sequence of names, got {layers!r}")
    if not names:
        raise ValueError("layers must name at least one layer, got an empty sequence")
    if len(set(names)) != len(names):
        raise ValueError(f"layers must not repeat a name, got {list(names)}")
    available = [name for name, _ in extractor.named_modules()]
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(
            f"unknown layer name(s) {unknown}; available names (from named_modules(), '' is the "
            f"whole extractor): {available}"
        )
    return tuple(names)


def _check_layer_weights(weights: object, layers: tuple[str, ...]) -> tuple[float, ...]:
    if weights is None:
        return (1.0,) * len(layers)
    if isinstance(weights, Mapping):
        if set(weights) != set(layers):
            raise ValueError(
                f"layer_weights must name exactly the layers {list(layers)}, got keys {list(weights)}"
            )
        values = [weights[name] for name in layers]
    elif isinstance(weights, Sequence) and not isinstance(weights, str):
        if len(weights) != len(layers):
            raise ValueError(
                f"layer_weights must have one weight per layer ({len(layers)}), got {len(weights)}"
            )
        values = list(weights)
    else:
        raise TypeError(
            f"layer_weights must be None, a sequence or a mapping, got {type(weights).__name__}"
        )
    # >= 0 and finite: a negative weight would reward moving the features apart.
    return tuple(check_range("layer_weights", w, 0.0, finite=True) for w in values)


def _check_criterion(criterion: object) -> tuple[str, Criterion]:
    if isinstance(criterion, str):
        if criterion not in _CRITERIA:
            raise ValueError(f"criterion must be 'mse', 'l1' or a callable, got {criterion!r}")
        return criterion, _CRITERIA[criterion]
    if callable(criterion):
        return getattr(criterion, "__name__", type(criterion).__name__), criterion
    raise TypeError(f"criterion must be 'mse', 'l1' or a callable, got {type(criterion).__name__}")
