"""Checks that say when a scaling-law fit has failed, as one-line warnings.

A least-squares fit always returns numbers. These checks say when those numbers mean
nothing, so that reports can print the warning instead of confident-looking constants:

- the data contradict the law: losses do not fall with size (Kendall's tau of loss against
  size is not negative);
- too few points on the frontier: the points that define a falling law are the runs that
  beat every smaller one, not all runs (rising losses leave a frontier of one point);
- a parameter stuck at a bound of the optimizer: the data did not identify it;
- bootstrap intervals that span orders of magnitude (a coefficient's 95 % interval wider
  than a factor 10, or reaching 0) or an exponent's interval wider than its value.

Pure functions of numbers; no fitting here.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import kendalltau

SPAN_FACTOR = 10.0      # a coefficient's hi/lo above this: not determined


def frontier_mask(x, y) -> np.ndarray:
    """Points whose y is lower than that of every point with smaller x (ties in x: the best).

    Returns a boolean mask over the points. For a falling law every point is on the
    frontier; for losses that rise with x only the smallest x is.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.zeros(len(x), dtype=bool)
    best = math.inf
    for xv in np.unique(x):
        at = np.flatnonzero(x == xv)
        k = at[np.argmin(y[at])]
        if y[k] < best:
            mask[k] = True
            best = y[k]
    return mask


def trend_warnings(x, y, what: str = "loss", size: str = "N") -> list[str]:
    """A warning when y does not fall with x (Kendall's tau >= 0, or undefined: flat)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2:
        return []
    tau = kendalltau(x, y).statistic if np.ptp(y) > 0 else math.nan
    if not math.isfinite(tau):
        return [f"{what} is flat in {size}: the data do not follow a falling power law"]
    if tau >= 0:
        return [f"{what} does not fall with {size} (Kendall tau = {tau:+.2f}): the data "
                "contradict a falling power law; check the runs (budget, lr, divergence)"]
    return []


def frontier_warnings(n_frontier: int, n_constants: int, size: str = "N",
                      definition: str | None = None) -> list[str]:
    """A warning when the frontier has no more points than the fit has constants."""
    if n_frontier <= n_constants:
        definition = definition or f"each better than every smaller {size}"
        return [f"only {n_frontier} point(s) on the frontier ({definition}) for "
                f"{n_constants} constants: the fit passes through them and its constants "
                "mean little"]
    return []


def bound_warnings(values: dict[str, float], bounds: dict[str, tuple[float, float]],
                   rel: float = 1e-3) -> list[str]:
    """A warning for each parameter within `rel` (relative to the bound's range) of a bound."""
    out = []
    for name, (lo, hi) in bounds.items():
        v = values[name]
        span = (hi - lo) if math.isfinite(hi - lo) else max(abs(lo), abs(hi), 1.0)
        for bound in (lo, hi):
            if math.isfinite(bound) and abs(v - bound) <= rel * span:
                out.append(f"{name} = {v:.4g} is at its bound {bound:.4g}: not identified by "
                           "these data")
                break
    return out


def interval_warnings(intervals: dict[str, tuple[float, float, float]],
                      coefficients: tuple[str, ...] = (),
                      exponents: tuple[str, ...] = ()) -> list[str]:
    """Warnings for intervals that span orders of magnitude.

    Args:
      intervals: name -> (median, lo, hi) from the bootstrap.
      coefficients: positive scale constants (A, B, N*): warn when hi/lo > SPAN_FACTOR.
      exponents: warn when hi - lo exceeds the exponent's |median|.
    """
    out = []
    for name in coefficients:
        med, lo, hi = intervals.get(name, (math.nan,) * 3)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        if lo <= 0 or hi / lo > SPAN_FACTOR:
            ratio = "reaches 0" if lo <= 0 else f"spans a factor {hi / lo:.3g}"
            out.append(f"{name}'s 95% interval [{lo:.3g}, {hi:.3g}] {ratio}: not determined")
    for name in exponents:
        med, lo, hi = intervals.get(name, (math.nan,) * 3)
        if math.isfinite(lo) and math.isfinite(hi) and hi - lo > abs(med):
            out.append(f"{name}'s 95% interval [{lo:.3g}, {hi:.3g}] is wider than its value "
                       f"{med:.3g}: not determined")
    return out
