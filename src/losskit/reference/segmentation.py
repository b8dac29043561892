"""NumPy references of the segmentation losses: the formulas written plainly, with loops.

Shared steps (the contract): activation on the whole input; index targets expanded pixel by pixel
(an ignored pixel gets no class and leaves every sum); channel 0 dropped without the background;
per-(image, class) sums, or per-class sums over the batch with ``batch_dice``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._common import as_float, log_sigmoid, log_softmax, sigmoid

__all__ = [
    "boundary_loss",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "signed_distance_map",
    "tversky_loss",
]


def _activate(x: np.ndarray, activation):
    if activation == "softmax":
        return np.exp(log_softmax(x, axis=1))
    if activation == "sigmoid":
        return sigmoid(x)
    return x


def _targets(target, shape, ignore_index):
    """``t`` of shape ``(N, C, S)`` and ``keep`` of shape ``(N, S)``."""
    n, c = shape[0], shape[1]
    s = int(np.prod(shape[2:]))
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        flat = target.reshape(n, s)
        t = np.zeros((n, c, s))
        keep = np.ones((n, s), dtype=bool)
        for i in range(n):
            for j in range(s):
                y = int(flat[i, j])
                if ignore_index is not None and y == ignore_index:
                    keep[i, j] = False
                elif c == 1:
                    t[i, 0, j] = float(y == 1)
                else:
                    t[i, y, j] = 1.0
        return t, keep
    return np.asarray(target, dtype=np.float64).reshape(n, c, s), np.ones((n, s), dtype=bool)


def _prepared(input, target, activation, ignore_index, include_background):
    x = as_float(input)
    n, c = x.shape[0], x.shape[1]
    p = _activate(x, activation).reshape(n, c, -1)
    t, keep = _targets(target, x.shape, ignore_index)
    classes = list(range(0 if include_background else 1, c))
    return p, t, keep, classes


def _rows(batch_dice: bool, n: int) -> list[list[int]]:
    """Which images each row sums over."""
    return [list(range(n))] if batch_dice else [[i] for i in range(n)]


def _sums(p, t, keep, classes, batch_dice, squared=False):
    """``I, P, T`` of shape ``(R, C')``: sums over the kept pixels of the row's images."""
    rows = _rows(batch_dice, p.shape[0])
    out = np.zeros((3, len(rows), len(classes)))
    for r, images in enumerate(rows):
        for k, c in enumerate(classes):
            for i in images:
                for j in range(p.shape[2]):
                    if not keep[i, j]:
                        continue
                    pv, tv = p[i, c, j], t[i, c, j]
                    out[0, r, k] += pv * tv
                    out[1, r, k] += pv * pv if squared else pv
                    out[2, r, k] += tv * tv if squared else tv
    return out[0], out[1], out[2]


def _class_weights(weight, classes):
    return None if weight is None else np.array([as_float(weight)[c] for c in classes])


def _reduce(loss, weight, reduction, batch_dice):
    """``loss`` ``(R, C')``: none -> ``w ℓ`` (``(C',)`` with batch_dice), sum, weighted mean."""
    w = np.ones(loss.shape[1]) if weight is None else weight
    weighted = loss * w
    if reduction == "none":
        return weighted[0] if batch_dice else weighted
    if reduction == "sum":
        return np.asarray(weighted.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(weighted.sum() / (w.sum() * loss.shape[0]))


def _ratio(num, den, eps):
    return num / max(den, eps) if eps > 0 else num / den


def dice_loss(
    input,
    target,
    *,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    squared_pred=False,
    smooth=1e-5,
    eps=1e-7,
    reduction="mean",
):
    """``1 - (2 I + s) / max(P + T + s, eps)`` per (image, class), weighted mean over classes."""
    p, t, keep, classes = _prepared(input, target, activation, ignore_index, include_background)
    inter, ps, ts = _sums(p, t, keep, classes, batch_dice, squared_pred)
    loss = np.zeros_like(inter)
    for r, k in itertools.product(range(inter.shape[0]), range(inter.shape[1])):
        loss[r, k] = 1.0 - _ratio(2 * inter[r, k] + smooth, ps[r, k] + ts[r, k] + smooth, eps)
    return _reduce(loss, _class_weights(weight, classes), reduction, batch_dice)


def jaccard_loss(
    input,
    target,
    *,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    smooth=1e-5,
    eps=1e-7,
    reduction="mean",
):
    """``1 - (I + s) / max(P + T - I + s, eps)``."""
    p, t, keep, classes = _prepared(input, target, activation, ignore_index, include_background)
    inter, ps, ts = _sums(p, t, keep, classes, batch_dice)
    loss = np.zeros_like(inter)
    for r, k in itertools.product(range(inter.shape[0]), range(inter.shape[1])):
        union = ps[r, k] + ts[r, k] - inter[r, k]
        loss[r, k] = 1.0 - _ratio(inter[r, k] + smooth, union + smooth, eps)
    return _reduce(loss, _class_weights(weight, classes), reduction, batch_dice)


def _tversky(p, t, keep, classes, batch_dice, alpha, beta, smooth, eps):
    """The Tversky index with FP and FN summed pixel by pixel: ``Σ p (1 - t)``, ``Σ (1 - p) t``."""
    rows = _rows(batch_dice, p.shape[0])
    index = np.zeros((len(rows), len(classes)))
    for r, images in enumerate(rows):
        for k, c in enumerate(classes):
            tp = fp = fn = 0.0
            for i in images:
                for j in range(p.shape[2]):
                    if keep[i, j]:
                        tp += p[i, c, j] * t[i, c, j]
                        fp += p[i, c, j] * (1 - t[i, c, j])
                        fn += (1 - p[i, c, j]) * t[i, c, j]
            index[r, k] = _ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth, eps)
    return index


def tversky_loss(
    input,
    target,
    *,
    alpha=0.5,
    beta=0.5,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    smooth=1e-5,
    eps=1e-7,
    reduction="mean",
):
    """``1 - (TP + s) / max(TP + α FP + β FN + s, eps)``."""
    p, t, keep, classes = _prepared(input, target, activation, ignore_index, include_background)
    index = _tversky(p, t, keep, classes, batch_dice, alpha, beta, smooth, eps)
    return _reduce(1.0 - index, _class_weights(weight, classes), reduction, batch_dice)


def focal_tversky_loss(
    input,
    target,
    *,
    alpha=0.3,
    beta=0.7,
    gamma=0.75,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    smooth=1e-5,
    eps=1e-7,
    reduction="mean",
):
    """``(1 - TI)^γ`` per class."""
    p, t, keep, classes = _prepared(input, target, activation, ignore_index, include_background)
    index = _tversky(p, t, keep, classes, batch_dice, alpha, beta, smooth, eps)
    loss = np.maximum(1.0 - index, 0.0) ** gamma
    return _reduce(loss, _class_weights(weight, classes), reduction, batch_dice)


def generalized_dice_loss(
    input,
    target,
    *,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    smooth=1e-5,
    eps=1e-7,
    reduction="mean",
):
    """``1 - (2 Σ w I + s) / max(Σ w (P + T) + s, eps)``, ``w_c = u_c / T_c²``; an empty class takes
    the largest weight of the present classes of its row (0 if none is present)."""
    p, t, keep, classes = _prepared(input, target, activation, ignore_index, include_background)
    inter, ps, ts = _sums(p, t, keep, classes, batch_dice)
    user = _class_weights(weight, classes)
    out = np.zeros(inter.shape[0])
    for r in range(inter.shape[0]):
        finite = [1.0 / ts[r, k] ** 2 for k in range(len(classes)) if ts[r, k] > 0]
        fill = max(finite) if finite else 0.0
        num, den = smooth, smooth
        for k in range(len(classes)):
            w = 1.0 / ts[r, k] ** 2 if ts[r, k] > 0 else fill
            if user is not None:
                w *= user[k]
            num += 2 * w * inter[r, k]
            den += w * (ps[r, k] + ts[r, k])
        out[r] = 1.0 - _ratio(num, den, eps)
    if reduction == "none":
        return np.asarray(out[0]) if batch_dice else out
    return np.asarray(out.sum() if reduction == "sum" else out.mean())


def _lovasz(errors, gts):
    """Σ_k max(e_(k), 0) (J_k - J_{k-1}) for errors sorted decreasingly (Berman, Algorithm 1)."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total = sum(gts)
    loss, previous, seen_gt, seen_neg = 0.0, 0.0, 0.0, 0.0
    for i in order:
        seen_gt += gts[i]
        seen_neg += 1.0 - gts[i]
        jaccard = 1.0 - (total - seen_gt) / (total + seen_neg)
        loss += max(errors[i], 0.0) * (jaccard - previous)
        previous = jaccard
    return loss


def _lovasz_table(p_or_x, t, keep, classes, batch_dice, error_fn):
    rows = _rows(batch_dice, p_or_x.shape[0])
    loss = np.zeros((len(rows), len(classes)))
    mass = np.zeros_like(loss)
    for r, images in enumerate(rows):
        for k, c in enumerate(classes):
            errors, gts = [], []
            for i in images:
                for j in range(p_or_x.shape[2]):
                    if keep[i, j]:
                        errors.append(error_fn(p_or_x[i, c, j], t[i, c, j]))
                        gts.append(t[i, c, j])
            loss[r, k] = _lovasz(errors, gts) if errors else 0.0
            mass[r, k] = sum(gts)
    return loss, mass


def lovasz_softmax_loss(
    input,
    target,
    *,
    classes="present",
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    reduction="mean",
):
    """Lovász extension of the Jaccard loss on errors ``|t - p|``; ``present`` averages over the
    classes in each row's kept target (0 for a row without any)."""
    p, t, keep, kept = _prepared(input, target, activation, ignore_index, include_background)
    loss, mass = _lovasz_table(p, t, keep, kept, batch_dice, lambda pv, tv: abs(tv - pv))
    user = _class_weights(weight, kept)
    if classes == "all":
        return _reduce(loss, user, reduction, batch_dice)
    w = np.ones(len(kept)) if user is None else user
    present = (mass > 0) * w
    weighted = loss * present
    if reduction == "none":
        return weighted[0] if batch_dice else weighted
    if reduction == "sum":
        return np.asarray(weighted.sum())
    per_row = [
        weighted[r].sum() / present[r].sum() if present[r].sum() > 0 else 0.0
        for r in range(loss.shape[0])
    ]
    return np.asarray(np.mean(per_row))


def lovasz_hinge_loss(
    input,
    target,
    *,
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    reduction="mean",
):
    """Lovász hinge per channel: errors ``1 - x (2 t - 1)``, every channel counted."""
    x = as_float(input)
    n, c = x.shape[0], x.shape[1]
    t, keep = _targets(target, x.shape, ignore_index)
    kept = list(range(0 if include_background else 1, c))
    loss, _ = _lovasz_table(
        x.reshape(n, c, -1), t, keep, kept, batch_dice, lambda xv, tv: 1.0 - xv * (2 * tv - 1)
    )
    return _reduce(loss, _class_weights(weight, kept), reduction, batch_dice)


def _pixel_part(
    input, target, activation, ignore_index, include_background, weight, reduction, gamma, alpha
):
    """Cross entropy (``gamma=None``) or focal: the weighted mean over the scored target mass
    (softmax) or over the kept elements of the kept channels (sigmoid); 0 if nothing is scored."""
    x = as_float(input)
    n, c = x.shape[0], x.shape[1]
    xs = x.reshape(n, c, -1)
    t, keep = _targets(target, x.shape, ignore_index)
    kept = list(range(0 if include_background else 1, c))
    w = np.ones(c) if weight is None else as_float(weight)
    total = mass = 0.0
    if activation == "softmax":
        logp = log_softmax(xs, axis=1)
        for i in range(n):
            for j in range(xs.shape[2]):
                if not keep[i, j]:
                    continue
                for k in kept:
                    if t[i, k, j] == 0:
                        continue
                    factor = 1.0 if gamma is None else (1.0 - math.exp(logp[i, k, j])) ** gamma
                    total += -w[k] * t[i, k, j] * factor * logp[i, k, j]
                    mass += w[k] * t[i, k, j]
    else:
        for i, k, j in itertools.product(range(n), kept, range(xs.shape[2])):
            if not keep[i, j]:
                continue
            v, y = xs[i, k, j], t[i, k, j]
            bce = -(y * log_sigmoid(np.array(v)) + (1 - y) * log_sigmoid(np.array(-v)))
            if gamma is not None:
                p = 1.0 / (1.0 + math.exp(-v))
                p_t = p * y + (1 - p) * (1 - y)
                a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
                bce = a_t * (1.0 - p_t) ** gamma * bce
            total += w[k] * float(bce)
            mass += w[k]
    if reduction == "sum":
        return total
    return total / mass if mass > 0 else 0.0


def dice_ce_loss(
    input,
    target,
    *,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    squared_pred=False,
    smooth=1e-5,
    eps=1e-7,
    lambda_dice=1.0,
    lambda_ce=1.0,
    ce_include_background=True,
    reduction="mean",
):
    """``λ_dice Dice + λ_ce CE`` with the same contract for both parts."""
    dice = dice_loss(
        input,
        target,
        activation=activation,
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        batch_dice=batch_dice,
        squared_pred=squared_pred,
        smooth=smooth,
        eps=eps,
        reduction=reduction,
    )
    ce = _pixel_part(
        input,
        target,
        activation,
        ignore_index,
        ce_include_background,
        weight,
        reduction,
        None,
        None,
    )
    return np.asarray(lambda_dice * float(dice) + lambda_ce * ce)


def dice_focal_loss(
    input,
    target,
    *,
    gamma=2.0,
    alpha=None,
    activation="softmax",
    ignore_index=None,
    include_background=True,
    weight=None,
    batch_dice=False,
    squared_pred=False,
    smooth=1e-5,
    eps=1e-7,
    lambda_dice=1.0,
    lambda_focal=1.0,
    focal_include_background=True,
    reduction="mean",
):
    """``λ_dice Dice + λ_focal Focal`` with the same contract for both parts."""
    dice = dice_loss(
        input,
        target,
        activation=activation,
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        batch_dice=batch_dice,
        squared_pred=squared_pred,
        smooth=smooth,
        eps=eps,
        reduction=reduction,
    )
    focal = _pixel_part(
        input,
        target,
        activation,
        ignore_index,
        focal_include_background,
        weight,
        reduction,
        gamma,
        alpha,
    )
    return np.asarray(lambda_dice * float(dice) + lambda_focal * focal)


def boundary_loss(
    input,
    distance,
    *,
    activation="softmax",
    include_background=True,
    weight=None,
    batch_dice=False,
    reduction="mean",
):
    """``mean_q φ(q) p(q)`` per (image, class)."""
    x = as_float(input)
    n, c = x.shape[0], x.shape[1]
    p = _activate(x, activation).reshape(n, c, -1)
    d = as_float(distance).reshape(n, c, -1)
    kept = list(range(0 if include_background else 1, c))
    rows = _rows(batch_dice, n)
    loss = np.zeros((len(rows), len(kept)))
    for r, images in enumerate(rows):
        for k, cls in enumerate(kept):
            values = [p[i, cls, j] * d[i, cls, j] for i in images for j in range(p.shape[2])]
            loss[r, k] = sum(values) / len(values)
    return _reduce(loss, _class_weights(weight, kept), reduction, batch_dice)


def signed_distance_map(masks, spacing=None):
    """Brute force: for each pixel, the distance to the nearest pixel of the other side; outside
    ``d``, inside ``-(d - 1)``; an empty or full mask gives zeros. ``masks``: ``(N, C, *spatial)``."""
    masks = np.asarray(masks) > 0.5
    spatial = masks.shape[2:]
    scale = np.ones(len(spatial)) if spacing is None else np.asarray(spacing, dtype=np.float64)
    coords = list(itertools.product(*(range(s) for s in spatial)))
    out = np.zeros(masks.shape)
    for i in range(masks.shape[0]):
        for c in range(masks.shape[1]):
            m = masks[i, c]
            if not m.any() or m.all():
                continue
            for q in coords:
                other = [r for r in coords if m[r] != m[q]]
                d = min(
                    math.sqrt(sum(((a - b) * s) ** 2 for a, b, s in zip(q, r, scale, strict=True)))
                    for r in other
                )
                out[(i, c, *q)] = -(d - 1.0) if m[q] else d
    return out
