"""NumPy references of the multi-task gradient aggregators and loss-level methods (float64, no torch).

Each ``*_direction(J, ...)`` takes the per-task gradients as the rows of ``J`` (``(T, n)``) and
returns the aggregated direction (``(n,)``), written from the paper's definition on the gradient
vectors themselves (never through the Gramian, and with other solvers than losskit's): MGDA and
UPGrad by brute-force enumeration of active sets, CAGrad with scipy's SLSQP (as the official code),
Nash-MTL by a root finder on ``log α``, Aligned-MTL through the SVD of ``J``, IMTL-G by the
paper's closed form. Randomised methods take their random draws as arguments.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "aligned_mtl_direction",
    "cagrad_direction",
    "famo_logits_step",
    "graddrop_direction",
    "gradvac_direction",
    "imtlg_direction",
    "mgda_direction",
    "nashmtl_direction",
    "pcgrad_direction",
    "stch_loss",
    "upgrad_direction",
]


def _rows(J: object) -> np.ndarray:
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2:
        raise ValueError(f"J must be (T, n), got shape {J.shape}")
    return J


def mgda_direction(J: object) -> np.ndarray:
    """The min-norm point of the convex hull of the rows, by enumerating every support."""
    J = _rows(J)
    T = len(J)
    best, best_norm = None, np.inf
    for k in range(1, T + 1):
        for support in itertools.combinations(range(T), k):
            A = J[list(support)]
            if k == 1:
                point = A[0]
            else:
                # affine hull of the support: A[0] + Σ c_i (A[i] - A[0]); closest point to 0
                D = (A[1:] - A[0]).T
                c = np.linalg.lstsq(D, -A[0], rcond=None)[0]
                coef = np.concatenate([[1.0 - c.sum()], c])
                if coef.min() < -1e-12:
                    continue  # outside the face
                point = coef @ A
            norm = point @ point
            if norm < best_norm - 1e-15:
                best, best_norm = point, norm
    return best


def pcgrad_direction(J: object, orders: list[list[int]]) -> np.ndarray:
    """PCGrad (Yu et al. 2020, Alg. 1) with the given visiting order of each task."""
    J = _rows(J)
    out = np.zeros(J.shape[1])
    for i, order in enumerate(orders):
        g = J[i].copy()
        for j in order:
            if j == i:
                continue
            nj = J[j] @ J[j]
            if nj > 0 and g @ J[j] < 0:
                g = g - (g @ J[j]) / nj * J[j]
        out += g
    return out


def cagrad_direction(J: object, c: float, rescale: int = 1) -> np.ndarray:
    """CAGrad (Liu et al. 2021) solved as the official code does: scipy SLSQP on the dual."""
    from scipy.optimize import minimize

    J = _rows(J)
    T = len(J)
    g0 = J.mean(axis=0)
    GG = J @ J.T
    s = c * np.linalg.norm(g0)

    def objective(w: np.ndarray) -> float:
        return float(w @ (J @ g0) + s * np.sqrt(max(w @ GG @ w, 0.0)))

    res = minimize(
        objective,
        np.full(T, 1.0 / T),
        bounds=[(0.0, 1.0)] * T,
        constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum()},),
        method="SLSQP",
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    gw = res.x @ J
    d = g0 + (s / np.linalg.norm(gw)) * gw if np.linalg.norm(gw) > 0 else g0
    return d / {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]


def imtlg_direction(J: object) -> np.ndarray:
    """IMTL-G (Liu et al. 2021, eq. 8): ``α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹``, ``α_1 = 1 - Σ α_{2:T}``."""
    J = _rows(J)
    u = J / np.linalg.norm(J, axis=1, keepdims=True)
    U = u[0] - u[1:]
    D = J[0] - J[1:]
    alpha = J[0] @ U.T @ np.linalg.inv(D @ U.T)
    alpha = np.concatenate([[1.0 - alpha.sum()], alpha])
    return alpha @ J


def nashmtl_direction(J: object, normalize: bool = True, max_norm: float = 0.0) -> np.ndarray:
    """Nash-MTL (Navon et al. 2022): ``α_t (Gα)_t = 1``, by scipy (L-BFGS-B on the convex
    ``½αᵀGα − Σ log α``, then Levenberg-Marquardt on the condition in ``log α``)."""
    from scipy.optimize import least_squares, minimize

    J = _rows(J)
    G = J @ J.T
    Gs = G / np.linalg.norm(G) if normalize else G
    T = len(G)

    def f(a: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.5 * a @ Gs @ a - np.log(a).sum(), Gs @ a - 1.0 / a

    rough = minimize(
        f,
        1.0 / np.sqrt(np.diag(Gs)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(1e-12, None)] * T,
        options={"ftol": 1e-16, "gtol": 1e-14, "maxiter": 10000},
    ).x
    sol = least_squares(
        lambda b: np.exp(b) * (Gs @ np.exp(b)) - 1.0,
        np.log(rough),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        method="lm",
    )
    alpha = np.exp(sol.x)
    d = alpha @ J
    if max_norm > 0 and np.linalg.norm(d) > max_norm:
        d = d * (max_norm / np.linalg.norm(d))
    return d


def aligned_mtl_direction(
    J: object, pref: np.ndarray | None = None, scale_mode: str = "min"
) -> np.ndarray:
    """Aligned-MTL (Senushkin et al. 2023): ``Ĵ = σ U Vᵀ`` from the SVD ``J = U Σ Vᵀ``, ``d = Ĵᵀp``."""
    J = _rows(J)
    T = len(J)
    p = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    U, S, Vt = np.linalg.svd(J, full_matrices=False)
    keep = (S**2).max() * T * np.finfo(np.float64).eps < S**2
    U, S, Vt = U[:, keep], S[keep], Vt[keep]
    lower_median = np.sort(S**2)[(len(S) - 1) // 2]
    sigma2 = {"min": (S**2).min(), "median": lower_median, "rmse": (S**2).mean()}[scale_mode]
    return (np.sqrt(sigma2) * U @ Vt).T @ p


def _project_dual_cone(g: np.ndarray, J: np.ndarray) -> np.ndarray:
    """``argmin_{x: Jx >= 0} ‖x - g‖``, by enumerating the sets of active constraints."""
    T = len(J)
    best, best_dist = None, np.inf
    for k in range(0, T + 1):
        for active in itertools.combinations(range(T), k):
            A = J[list(active)]
            x = g - A.T @ np.linalg.lstsq(A @ A.T, A @ g, rcond=None)[0] if k else g.copy()
            if (J @ x).min() < -1e-10 * max(1.0, np.abs(J).max() * np.abs(x).max()):
                continue
            dist = np.sum((x - g) ** 2)
            if dist < best_dist - 1e-15:
                best, best_dist = x, dist
    return best


def upgrad_direction(J: object, pref: np.ndarray | None = None) -> np.ndarray:
    """UPGrad (Quinton & Rey 2024): ``Σ_i p_i π(g_i)``, π the projection onto ``{x: Jx >= 0}``."""
    J = _rows(J)
    T = len(J)
    p = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    return sum(p[i] * _project_dual_cone(J[i], J) for i in range(T))


def gradvac_direction(
    J: object, orders: list[list[int]], phi_hat: np.ndarray, beta: float, eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """GradVac (Wang et al. 2021) on the vectors; returns ``(d, updated targets)``."""
    J = _rows(J)
    phi_hat = np.array(phi_hat, dtype=np.float64)
    out = np.zeros(J.shape[1])
    for i, order in enumerate(orders):
        g = J[i].copy()
        for j in order:
            nj = np.linalg.norm(J[j])
            phi = g @ J[j] / (np.linalg.norm(g) * nj + eps)
            t = phi_hat[i, j]
            if phi < t:
                coef = np.linalg.norm(g) * (t * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - t**2))
                g = g + coef / (nj * np.sqrt(1 - t**2) + eps) * J[j]
            phi_hat[i, j] = (1 - beta) * t + beta * phi
        out += g
    return out, phi_hat


def graddrop_direction(J: object, U: object, leak: object = None) -> np.ndarray:
    """GradDrop (Chen et al. 2020) with the uniform draws ``U`` (one per coordinate)."""
    J = _rows(J)
    U = np.asarray(U, dtype=np.float64)
    leak = np.zeros(len(J)) if leak is None else np.asarray(leak, dtype=np.float64)
    out = np.zeros(J.shape[1])
    for k in range(J.shape[1]):
        col = J[:, k]
        total = np.abs(col).sum()
        if total == 0:
            continue
        purity = 0.5 * (1 + col.sum() / total)
        for t in range(len(J)):
            keep = (purity > U[k] and col[t] > 0) or (purity < U[k] and col[t] < 0)
            out[k] += (leak[t] + (1 - leak[t]) * keep) * col[t]
    return out


def famo_logits_step(
    logits: np.ndarray, prev_losses: np.ndarray, new_losses: np.ndarray, min_losses: np.ndarray
) -> np.ndarray:
    """FAMO's gradient for its logits ``ξ`` (Liu et al. 2023, eq. 8): ``∂/∂ξ softmax(ξ)·δ``,
    ``δ_t = log(L_t - L*_t + 1e-8)(before) - log(L_t - L*_t + 1e-8)(after)``."""
    z = np.exp(logits - logits.max())
    z /= z.sum()
    delta = np.log(prev_losses - min_losses + 1e-8) - np.log(new_losses - min_losses + 1e-8)
    jac = np.diag(z) - np.outer(z, z)  # ∂z/∂ξ (symmetric)
    return jac @ delta


def stch_loss(losses: object, mu: float, pref: object = None, ideal: object = None) -> float:
    """Smooth Tchebycheff scalarisation (Lin et al. 2024): ``μ log Σ_t exp(p_t (L_t - z_t) / μ)``."""
    L = np.asarray(losses, dtype=np.float64)
    p = np.ones_like(L) if pref is None else np.asarray(pref, dtype=np.float64)
    z = np.zeros_like(L) if ideal is None else np.asarray(ideal, dtype=np.float64)
    a = p * (L - z) / mu
    return float(mu * (a.max() + np.log(np.exp(a - a.max()).sum())))
