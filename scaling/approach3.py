"""Chinchilla approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta over all runs.

As Hoffmann et al. (2022, section 3.3 and appendix D.2): with a = log A, b = log B,
e = log E, minimise the Huber loss (delta = 1e-3) of

    log L_hat = LSE(a - alpha·log N, b - beta·log D, e)      against log L,

with L-BFGS (scipy's L-BFGS-B, analytic gradient; alpha and beta kept in [0, 3]) from the
best few points of a grid of initialisations; the lowest objective wins. Intervals: a seeded
bootstrap over runs, each refit started at the point estimate.

The compute-optimal allocation under C = 6·N·D follows in closed form:
N_opt(C) = G·(C/6)^(beta/(alpha+beta)), D_opt(C) = G^-1·(C/6)^(alpha/(alpha+beta)),
G = (alpha·A / (beta·B))^(1/(alpha+beta)), so approach 2's exponent a is beta/(alpha+beta).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from scaling import fit_checks
from scaling.fit import one_blas_thread

HUBER_DELTA = 1e-3
NAMES = ("E", "A", "alpha", "B", "beta")
EXPONENT_BOUNDS = (0.0, 3.0)
# Hoffmann et al.'s grid of initialisations (a, b in 0, 5, ..., 25; alpha, beta in 0, 0.5,
# ..., 2; e in -1, -0.5, ..., 1) as (a, alpha, b, beta, e). The objective is evaluated on
# all of it; L-BFGS runs from the best few (all 4500 starts would be needlessly slow).
_GRID = list(itertools.product(np.arange(0, 26, 5.0), np.arange(0, 2.01, 0.5),
                               np.arange(0, 26, 5.0), np.arange(0, 2.01, 0.5),
                               np.arange(-1, 1.01, 0.5)))
_STARTS = 4


class Approach3Error(ValueError):
    """Too little data for five constants; the message is one line."""


@dataclasses.dataclass
class LossSurfaceFit:
    """L(N, D) = E + A/N^alpha + B/D^beta with bootstrap intervals."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    intervals: dict[str, tuple[float, float, float]]   # name -> (median, 2.5 %, 97.5 %)
    boot_draws: np.ndarray                               # (refits, 5) in NAMES order
    n_points: int
    residuals: np.ndarray                                # log L - log L_hat per point
    warnings: list[str]

    def __call__(self, n, d):
        return loss_surface(np.asarray(n, float), np.asarray(d, float), self.E, self.A,
                            self.alpha, self.B, self.beta)

    @property
    def a(self) -> float:
        """Exponent of N_opt(C) ∝ C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        return optimal_coefficient(self.A, self.alpha, self.B, self.beta)

    def optimal_params(self, compute):
        """N_opt(C) = G·(C/6)^a."""
        return self.G * np.power(np.asarray(compute, float) / 6.0, self.a)

    def a_interval(self) -> tuple[float, float, float]:
        """(median, 2.5 %, 97.5 %) of a over the bootstrap refits."""
        if len(self.boot_draws) == 0:
            return self.a, math.nan, math.nan
        alpha, beta = self.boot_draws[:, 2], self.boot_draws[:, 4]
        a = beta / (alpha + beta)
        return float(np.median(a)), float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))


def loss_surface(n, d, E, A, alpha, B, beta):
    """E + A/N^alpha + B/D^beta."""
    return E + A / np.power(n, alpha) + B / np.power(d, beta)


def optimal_coefficient(A, alpha, B, beta) -> float:
    """G = (alpha·A / (beta·B))^(1/(alpha+beta))."""
    return float((alpha * A / (beta * B)) ** (1.0 / (alpha + beta)))


def _objective(theta, log_n, log_d, log_l):
    """Huber loss of the LSE prediction of log L (divided by delta) and its gradient.

    Plain numpy (no scipy.special) because L-BFGS calls it thousands of times per bootstrap.
    """
    a, alpha, b, beta, e = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    exp = np.exp(terms - top)
    total = exp.sum(axis=0)
    r = top + np.log(total) - log_l                      # LSE - log L
    abs_r = np.abs(r)
    value = float(np.sum(np.where(abs_r <= HUBER_DELTA, 0.5 * r * r,
                                  HUBER_DELTA * (abs_r - 0.5 * HUBER_DELTA)))) / HUBER_DELTA
    dr = np.clip(r / HUBER_DELTA, -1.0, 1.0)             # d huber/d r, divided by delta
    w = exp / total * dr                                  # softmax weights · dr, (3, points)
    grad = np.array([w[0].sum(), -(w[0] * log_n).sum(), w[1].sum(), -(w[1] * log_d).sum(),
                     w[2].sum()])
    return value, grad


def _grid_values(log_n, log_d, log_l) -> np.ndarray:
    g = np.array(_GRID)                                   # (starts, 5): a, alpha, b, beta, e
    terms = np.stack([g[:, :1] - g[:, 1:2] * log_n, g[:, 2:3] - g[:, 3:4] * log_d,
                      np.broadcast_to(g[:, 4:5], (len(g), len(log_n)))])
    r = logsumexp(terms, axis=0) - log_l
    return huber(HUBER_DELTA, r).sum(axis=1)


def _minimise(log_n, log_d, log_l, starts) -> np.ndarray | None:
    bounds = [(None, None), EXPONENT_BOUNDS, (None, None), EXPONENT_BOUNDS, (None, None)]
    best = None
    for start in starts:
        res = minimize(_objective, np.asarray(start, float), args=(log_n, log_d, log_l),
                       jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best[0]):
            best = (res.fun, res.x)
    return None if best is None else best[1]


def _constants(theta) -> np.ndarray:
    a, alpha, b, beta, e = theta
    return np.array([math.exp(e), math.exp(a), alpha, math.exp(b), beta])


def fit_loss_surface(params, tokens, losses, *, boot: int = 1000,
                     seed: int = 0) -> LossSurfaceFit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al.'s approach 3).

    Args:
      params: N per run (non-embedding parameters).
      tokens: D per run (tokens trained on).
      losses: final loss per run.
      boot: bootstrap resamples over runs (0: no intervals).
      seed: bootstrap seed.

    Raises:
      Approach3Error: fewer than 6 runs, fewer than 2 distinct N or D, or non-positive data.
    """
    n, d, y = (np.asarray(v, dtype=float) for v in (params, tokens, losses))
    ok = np.isfinite(n) & np.isfinite(d) & np.isfinite(y)
    n, d, y = n[ok], d[ok], y[ok]
    if len(y) < 6 or len(np.unique(n)) < 2 or len(np.unique(d)) < 2:
        raise Approach3Error(f"L(N, D) needs at least 6 runs with at least 2 distinct N and 2 "
                             f"distinct D for 5 constants; got {len(y)} runs, "
                             f"{len(np.unique(n))} N, {len(np.unique(d))} D")
    if np.any(n <= 0) or np.any(d <= 0) or np.any(y <= 0):
        raise Approach3Error("L(N, D): N, D and losses must be positive")
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(y)
    rng = np.random.default_rng(seed)
    draws = []
    with one_blas_thread():
        order = np.argsort(_grid_values(log_n, log_d, log_l))[:_STARTS]
        theta = _minimise(log_n, log_d, log_l, [_GRID[k] for k in order])
        if theta is None:
            raise Approach3Error("L(N, D): no L-BFGS start converged")
        for _ in range(boot):
            idx = rng.integers(0, len(y), len(y))
            if len(np.unique(n[idx])) < 2 or len(np.unique(d[idx])) < 2:
                continue
            refit = _minimise(log_n[idx], log_d[idx], log_l[idx], [theta])
            if refit is not None:
                draws.append(_constants(refit))
    draws = np.array(draws, dtype=float).reshape(-1, 5)
    point = _constants(theta)
    intervals = {}
    for k, name in enumerate(NAMES):
        if len(draws):
            col = draws[:, k]
            intervals[name] = (float(np.median(col)), float(np.percentile(col, 2.5)),
                               float(np.percentile(col, 97.5)))
        else:
            intervals[name] = (float(point[k]), math.nan, math.nan)
    values = dict(zip(NAMES, map(float, point)))
    residuals = log_l - np.log(loss_surface(n, d, *point))
    checks = fit_checks.frontier_warnings(len(y), 5, definition="runs")
    checks += fit_checks.bound_warnings(values, {"alpha": EXPONENT_BOUNDS,
                                                 "beta": EXPONENT_BOUNDS})
    checks += fit_checks.interval_warnings(intervals, coefficients=("E", "A", "B"),
                                           exponents=("alpha", "beta"))
    return LossSurfaceFit(**values, intervals=intervals, boot_draws=draws, n_points=len(y),
                          residuals=residuals, warnings=[f"L(N, D): {w}" for w in checks])


def format_loss_surface(fit: LossSurfaceFit, names: list[str] | None = None) -> list[str]:
    """The constants (or, after failed checks, warnings and rough values), the implied
    compute-optimal allocation, and the residual of each run."""
    lines = [f"L(N, D) = E + A/N^alpha + B/D^beta   [approach 3: Huber (delta={HUBER_DELTA}) "
             f"on log loss, {fit.n_points} runs, bootstrap {len(fit.boot_draws)} refits]"]
    lines += [f"WARNING: {w}" for w in fit.warnings]
    for name in NAMES:
        value = getattr(fit, name)
        _, lo, hi = fit.intervals[name]
        if fit.warnings:
            lines.append(f"  {name:<6} ~ {value:.2g}   (not identified; 95% CI [{lo:.2g}, "
                         f"{hi:.2g}])")
        else:
            lines.append(f"  {name:<6} = {value:10.4g}   95% CI [{lo:.4g}, {hi:.4g}]")
    _, lo, hi = fit.a_interval()
    lines.append(f"  implied N_opt(C) = G·(C/6)^a: a = beta/(alpha+beta) = {fit.a:.3f} "
                 f"[{lo:.3f}, {hi:.3f}], G = {fit.G:.3g}")
    lines.append("  residuals (log loss - log fit) per run:")
    for k, r in enumerate(fit.residuals):
        label = names[k] if names else f"#{k}"
        lines.append(f"    {label:<24} {r:+.4f}")
    return lines
