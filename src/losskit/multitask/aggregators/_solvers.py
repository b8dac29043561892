"""The small optimisation problems of the aggregators, solved in float64 NumPy (no cvxpy, no scipy).

Every problem is over ``T`` task weights (``T`` is the number of tasks, a handful), so the
Gramian is moved to the host once per step and solved there exactly:

* :func:`qp_simplex` / :func:`qp_nonneg`: ``min ½ xᵀQx + pᵀx`` over the probability simplex or
  the non-negative orthant, by a primal active-set method (Nocedal & Wright, Alg. 16.3). Each
  iteration solves one small KKT system; the method terminates in finitely many steps at the exact
  optimum (up to round-off). Used by MGDA, UPGrad and CAGrad.
* :func:`nash_bargaining`: the Nash-MTL condition ``α ⊙ Gα = 1`` by damped Newton on the strictly
  convex ``½ αᵀGα − Σ log α`` (whose stationary point is exactly that condition).
* :func:`cagrad_weights`: CAGrad's dual ``min_{w∈Δ} wᵀGḡ + c‖ḡ‖·‖Jᵀw‖`` by bisection on
  ``τ = ‖Jᵀw‖``: for a fixed ``τ`` the problem is the simplex QP with ``Q = c‖ḡ‖ G / τ``, and at
  the root ``τ = ‖Jᵀw(τ)‖`` its KKT conditions are those of the original convex problem.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cagrad_weights", "nash_bargaining", "qp_nonneg", "qp_simplex"]


def _ridge(Q: np.ndarray) -> np.ndarray:
    # A Gramian is only positive semi-definite (collinear or zero gradients). A ridge of 1e-12 of its
    # mean diagonal makes every KKT system non-singular and moves the solution by ~1e-12 relative.
    scale = float(np.mean(np.diag(Q))) if Q.size else 0.0
    return Q + max(1e-12 * scale, 1e-300) * np.eye(len(Q))


def _active_set(Q: np.ndarray, p: np.ndarray, simplex: bool) -> np.ndarray:
    T = len(p)
    Q = _ridge(Q)
    scale = max(float(np.abs(Q).max()), float(np.abs(p).max()) if T else 0.0, 1e-300)
    tol = 1e-12 * scale
    if simplex:
        x, fixed = np.full(T, 1.0 / T), np.zeros(T, dtype=bool)
    else:
        x, fixed = np.zeros(T), np.ones(T, dtype=bool)
    for _ in range(20 * T + 100):
        free = ~fixed
        target = np.zeros(T)
        nu = 0.0
        if free.any():
            Qf, pf = Q[np.ix_(free, free)], p[free]
            if simplex:
                k = int(free.sum())
                kkt = np.zeros((k + 1, k + 1))
                kkt[:k, :k], kkt[:k, k], kkt[k, :k] = Qf, 1.0, 1.0
                sol = np.linalg.solve(kkt, np.concatenate([-pf, [1.0]]))
                target[free], nu = sol[:k], -sol[k]  # gradient on the free set = nu · 1
            else:
                target[free] = np.linalg.solve(Qf, -pf)
        step = target - x
        if np.abs(step).max() <= 1e-13 * (1.0 + np.abs(x).max()):
            mult = Q @ x + p - nu  # multipliers of the bounds x_i >= 0 held in the working set
            if not fixed.any() or mult[fixed].min() >= -tol:
                return x
            fixed[np.flatnonzero(fixed)[np.argmin(mult[fixed])]] = False
            continue
        shrinking = free & (step < 0)
        ratios = np.full(T, np.inf)
        ratios[shrinking] = -x[shrinking] / step[shrinking]
        blocking = int(np.argmin(ratios))
        alpha = min(1.0, float(ratios[blocking]))
        x = x + alpha * step
        if alpha < 1.0:
            x[blocking], fixed[blocking] = 0.0, True
        x = np.maximum(x, 0.0)
    return x  # degenerate cycling guard: x is feasible and (nearly) optimal


def qp_simplex(Q: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
    """``argmin_{x ≥ 0, Σx = 1} ½ xᵀQx + pᵀx`` for a PSD ``Q`` (``p`` defaults to 0)."""
    Q = np.asarray(Q, dtype=np.float64)
    p = np.zeros(len(Q)) if p is None else np.asarray(p, dtype=np.float64)
    x = _active_set(Q, p, simplex=True)
    return x / x.sum()


def qp_nonneg(Q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``argmin_{x ≥ 0} ½ xᵀQx + pᵀx`` for a PSD ``Q``."""
    return _active_set(np.asarray(Q, dtype=np.float64), np.asarray(p, dtype=np.float64), False)


def nash_bargaining(G: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """The ``α > 0`` with ``α_i (Gα)_i = 1`` for every ``i`` (Navon et al. 2022, eq. 3).

    It is the minimiser of ``f(α) = ½ αᵀGα − Σ_i log α_i`` (strictly convex on ``α > 0``), found by
    Newton's method with a backtracking line search that keeps ``α > 0``; stops when the Newton
    decrement is below 1e-24 (quadratic convergence) or after 100 steps.
    """
    G = np.asarray(G, dtype=np.float64)  # the Hessian G + diag(1/α²) is positive definite anyway
    T = len(G)
    if start is None or not np.all(np.isfinite(start)) or np.any(start <= 0):
        start = 1.0 / np.sqrt(np.diag(_ridge(G)) * T)
    a = np.asarray(start, dtype=np.float64).copy()

    def f(v: np.ndarray) -> float:
        return 0.5 * v @ G @ v - np.log(v).sum()

    for _ in range(100):
        grad = G @ a - 1.0 / a
        hess = G + np.diag(1.0 / a**2)
        delta = -np.linalg.solve(hess, grad)
        decrement = -grad @ delta
        if decrement < 1e-24:
            break
        neg = delta < 0
        t = min(1.0, 0.99 * float(np.min(-a[neg] / delta[neg]))) if neg.any() else 1.0
        fa = f(a)
        while f(a + t * delta) > fa - 0.25 * t * decrement and t > 1e-12:
            t *= 0.5
        if t <= 1e-12:
            break  # f is flat to round-off: polish below
        a = a + t * delta
    # Polish on the condition itself, F(α) = α ⊙ Gα - 1 (f loses digits when α is large).
    residual = np.abs(a * (G @ a) - 1.0).max()
    for _ in range(10):
        if residual < 1e-15:
            break
        jac = np.diag(G @ a) + a[:, None] * G
        trial = a - np.linalg.solve(jac, a * (G @ a) - 1.0)
        trial_residual = np.abs(trial * (G @ trial) - 1.0).max() if np.all(trial > 0) else np.inf
        if trial_residual >= residual:
            break
        a, residual = trial, trial_residual
    return a


def cagrad_weights(G: np.ndarray, c: float) -> tuple[np.ndarray, float, float]:
    """CAGrad's dual solution: ``(w, ‖Jᵀw‖, ‖ḡ‖)`` with ``w = argmin_{w∈Δ} wᵀGḡ·T + c‖ḡ‖‖Jᵀw‖``.

    (``Gḡ`` written for ``G·1/T``.) Returns ``‖Jᵀw‖ = 0`` when the optimum is degenerate.
    """
    G = np.asarray(G, dtype=np.float64)
    T = len(G)
    b = G @ np.full(T, 1.0 / T)
    g0_norm = float(np.sqrt(max(np.full(T, 1.0 / T) @ b, 0.0)))
    s = c * g0_norm
    if s == 0.0:
        w = qp_simplex(np.zeros((T, T)), b)
        return w, float(np.sqrt(max(w @ G @ w, 0.0))), g0_norm

    def gap(tau: float) -> tuple[float, np.ndarray]:
        w = qp_simplex(G * (s / tau), b)
        return float(np.sqrt(max(w @ G @ w, 0.0))) - tau, w

    hi = float(np.sqrt(max(np.diag(G).max(), 0.0))) * 1.01 + 1e-300
    lo = hi * 1e-12
    g_lo, w = gap(lo)
    if g_lo <= 0.0:  # ‖Jᵀw‖ is ~0 at the optimum (the mean is within the conflict-free ball)
        return w, 0.0, g0_norm
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        g_mid, w_mid = gap(mid)
        if g_mid > 0.0:
            lo = mid
        else:
            hi, w = mid, w_mid
        if hi - lo <= 1e-15 * hi:
            break
    w = gap(hi)[1]
    return w, float(np.sqrt(max(w @ G @ w, 0.0))), g0_norm
