"""Chinchilla approach 2: iso-FLOP curves and the compute-optimal frontier.

Hoffmann et al. (2022, section 3.2): runs share a compute budget C (an iso-FLOP sweep: each
size trained on D = C / (6N) tokens). Per budget, a parabola in log N through the final
losses gives the loss-optimal size N*(C) at its minimum; across budgets, log-log least
squares gives N*(C) ∝ C^a, and D*(C) = C / (6·N*(C)) ∝ C^b with b = 1 - a.

Intervals: a seeded bootstrap that resamples the runs within each budget, refits each
budget's parabola and then the frontier (so a's interval carries the per-budget scatter).
Resamples with fewer than 3 distinct sizes, or whose parabola opens downward, are redrawn.

Warnings: a budget whose parabola opens downward (no minimum: left out of the frontier),
whose minimum lies outside the sizes it sampled (an extrapolation), or whose N* interval
spans more than a factor 10; fewer than 3 budgets on the frontier; a's interval wider
than a.

Budgets are grouped within 5 % (relative) of each other. Published exponents for
comparison: Chinchilla approach 2 a = 0.49, b = 0.51 (Hoffmann et al. 2022, Table 2);
Kaplan et al. (2020) a = 0.73.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from scaling import fit_checks

BUDGET_TOLERANCE = 0.05
PUBLISHED = (("Chinchilla approach 2 (Hoffmann et al. 2022, Table 2)", 0.49, 0.51),
             ("Kaplan et al. 2020", 0.73, 0.27))
_MAX_REDRAWS = 20


class IsoFlopError(ValueError):
    """Data that cannot support an iso-FLOP analysis; the message is one line."""


@dataclasses.dataclass
class BudgetFit:
    """One iso-FLOP curve: loss against N at (about) one compute budget."""
    flops: float                          # the budget C (geometric mean of the group)
    params: np.ndarray                    # N per run
    losses: np.ndarray                    # final loss per run
    names: list[str]
    coeffs: np.ndarray | None             # parabola loss = c2·x² + c1·x + c0, x = log N
    n_opt: float | None                   # N*(C): the parabola's minimum (None: no minimum)
    n_opt_interval: tuple[float, float]   # 2.5 %, 97.5 % over the bootstrap
    loss_opt: float | None
    draws: np.ndarray                     # bootstrap N* draws
    warnings: list[str]

    @property
    def tokens_opt(self) -> float | None:
        return None if self.n_opt is None else self.flops / (6.0 * self.n_opt)

    def curve(self, n):
        return np.polyval(self.coeffs, np.log(np.asarray(n, dtype=float)))


@dataclasses.dataclass
class IsoFlopFit:
    budgets: list[BudgetFit]
    a: float | None                       # N*(C) ∝ C^a
    a_interval: tuple[float, float, float]  # median, 2.5 %, 97.5 %
    log_k: float | None                   # N*(C) = exp(log_k)·C^a
    warnings: list[str]

    @property
    def b(self) -> float | None:
        """D*(C) = C / (6 N*(C)) ∝ C^(1 - a)."""
        return None if self.a is None else 1.0 - self.a

    @property
    def b_interval(self) -> tuple[float, float, float]:
        med, lo, hi = self.a_interval
        return 1.0 - med, 1.0 - hi, 1.0 - lo

    def optimal_params(self, compute):
        return np.exp(self.log_k) * np.power(np.asarray(compute, dtype=float), self.a)


def group_budgets(flops, tolerance: float = BUDGET_TOLERANCE) -> np.ndarray:
    """Group labels (0, 1, ... by increasing C): budgets within `tolerance` of the smallest
    member of their group share a label."""
    flops = np.asarray(flops, dtype=float)
    labels = np.empty(len(flops), dtype=int)
    order = np.argsort(flops)
    label, start = -1, None
    for k in order:
        if start is None or flops[k] > start * (1 + tolerance):
            label, start = label + 1, flops[k]
        labels[k] = label
    return labels


def parabola_minimum(params, losses) -> tuple[np.ndarray, float | None]:
    """(coefficients in log N, N at the minimum or None when the parabola opens downward)."""
    x = np.log(np.asarray(params, dtype=float))
    coeffs = np.polyfit(x, np.asarray(losses, dtype=float), 2)
    if coeffs[0] <= 0:
        return coeffs, None
    return coeffs, float(np.exp(-coeffs[1] / (2 * coeffs[0])))


def _fit_budget(flops, params, losses, names, boot, rng) -> BudgetFit:
    coeffs, n_opt = parabola_minimum(params, losses)
    notes = []
    label = f"C={flops:.3g}"
    draws = []
    if n_opt is None:
        notes.append(f"{label}: the parabola in log N opens downward (no minimum): losses "
                     "do not turn up at either end; left out of the frontier")
    else:
        if not params.min() <= n_opt <= params.max():
            notes.append(f"{label}: the minimum N*={n_opt:.3g} lies outside the sampled sizes "
                         f"[{params.min():.3g}, {params.max():.3g}] (extrapolated; add sizes "
                         "on that side)")
        for _ in range(boot):
            for _ in range(_MAX_REDRAWS):
                idx = rng.integers(0, len(params), len(params))
                if len(np.unique(params[idx])) < 3:
                    continue
                _, n_star = parabola_minimum(params[idx], losses[idx])
                if n_star is not None:
                    draws.append(n_star)
                    break
    draws = np.array(draws, dtype=float)
    interval = ((float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))
                if len(draws) else (math.nan, math.nan))
    if len(draws):
        notes += [f"{label}: {w}" for w in fit_checks.interval_warnings(
            {"N*": (n_opt, *interval)}, coefficients=("N*",))]
    loss_opt = None if n_opt is None else float(np.polyval(coeffs, math.log(n_opt)))
    return BudgetFit(flops, params, losses, names, coeffs, n_opt, interval, loss_opt, draws,
                     notes)


def fit_isoflop(flops, params, losses, names=None, *, boot: int = 1000,
                seed: int = 0) -> IsoFlopFit:
    """Approach 2 on runs given as (budget C, size N, final loss).

    Raises:
      IsoFlopError: no budget with at least 3 distinct sizes.
    """
    flops, params, losses = (np.asarray(v, dtype=float) for v in (flops, params, losses))
    names = list(names) if names is not None else [f"#{k}" for k in range(len(flops))]
    labels = group_budgets(flops)
    rng = np.random.default_rng(seed)
    budgets, notes = [], []
    for label in range(labels.max() + 1 if len(labels) else 0):
        at = np.flatnonzero(labels == label)
        at = at[np.argsort(params[at])]
        c = float(np.exp(np.mean(np.log(flops[at]))))
        if len(np.unique(params[at])) < 3:
            notes.append(f"C={c:.3g}: {len(np.unique(params[at]))} distinct size(s); a "
                         "parabola needs 3; budget left out")
            continue
        budgets.append(_fit_budget(c, params[at], losses[at], [names[k] for k in at], boot,
                                   rng))
    if not budgets:
        raise IsoFlopError("iso-FLOP: no compute budget has runs of at least 3 distinct sizes "
                           "(record the budget as sweep.flops, or sweep with "
                           "sweep.budget=flops)")
    for b in budgets:
        notes += b.warnings
    on = [b for b in budgets if b.n_opt is not None]
    notes += fit_checks.frontier_warnings(len(on), 2, definition="budgets with a minimum N*")
    if len(on) < 2:
        notes.append(f"N*(C) ∝ C^a needs minima at 2 or more budgets; got {len(on)}")
        return IsoFlopFit(budgets, None, (math.nan,) * 3, None, notes)
    log_c = np.log([b.flops for b in on])
    a, log_k = np.polyfit(log_c, np.log([b.n_opt for b in on]), 1)
    draws = []
    for k in range(boot):
        n_stars = [b.draws[k % len(b.draws)] if len(b.draws) else b.n_opt for b in on]
        draws.append(np.polyfit(log_c, np.log(n_stars), 1)[0])
    draws = np.array(draws)
    interval = ((float(np.median(draws)), float(np.percentile(draws, 2.5)),
                 float(np.percentile(draws, 97.5))) if len(draws) else (a, math.nan, math.nan))
    notes += fit_checks.interval_warnings({"a": interval}, exponents=("a",))
    return IsoFlopFit(budgets, float(a), interval, float(log_k), notes)


def format_isoflop(fit: IsoFlopFit) -> list[str]:
    """Per budget N*, its interval and each run's residual; then a and b beside the papers."""
    lines = [f"iso-FLOP analysis (Chinchilla approach 2): {len(fit.budgets)} budget(s)"]
    lines += [f"WARNING: {w}" for w in fit.warnings]
    for b in fit.budgets:
        if b.n_opt is None:
            lines.append(f"  C={b.flops:.3g}: no minimum ({len(b.params)} runs)")
        else:
            lo, hi = b.n_opt_interval
            lines.append(f"  C={b.flops:.3g}: N*={b.n_opt:.3g} 95% CI [{lo:.3g}, {hi:.3g}], "
                         f"D*={b.tokens_opt:.3g}, loss at N* {b.loss_opt:.4f} "
                         f"({len(b.params)} runs)")
        for name, n, loss in zip(b.names, b.params, b.losses):
            lines.append(f"    {name:<24} N={int(n):>12,}  loss {loss:.4f}  parabola "
                         f"{b.curve(n):.4f}  residual {loss - b.curve(n):+.4f}")
    if fit.a is None:
        lines.append("  N*(C) ∝ C^a: not fitted")
        return lines
    _, lo, hi = fit.a_interval
    _, blo, bhi = fit.b_interval
    rough = "~" if fit.warnings else "="
    lines.append(f"  N*(C) ∝ C^a: a {rough} {fit.a:.3f}  95% CI [{lo:.3f}, {hi:.3f}]")
    lines.append(f"  D*(C) ∝ C^b: b {rough} {fit.b:.3f}  95% CI [{blo:.3f}, {bhi:.3f}]")
    for paper, pa, pb in PUBLISHED:
        lines.append(f"    published: a = {pa:.2f}, b = {pb:.2f}  ({paper})")
    return lines


def plot_isoflop(fit: IsoFlopFit, path: str, ylabel: str = "final eval loss",
                 extra_warnings: list[str] | None = None, surface=None) -> None:
    """Hoffmann et al.'s Figure 3: iso-FLOP curves with their minima (left), N*(C) (middle)
    and D*(C) (right) with the fitted power laws; failed checks in red on the panels.

    surface: an approach-3 fit (scaling.approach3.LossSurfaceFit) whose N_opt(C) is drawn
    for comparison, or None.
    """
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from scaling.fit import warn_on_axes  # noqa: PLC0415

    fig, (ax_l, ax_n, ax_d) = plt.subplots(1, 3, figsize=(15, 4.5))
    cmap = plt.get_cmap("viridis")
    for k, b in enumerate(fit.budgets):
        color = cmap(k / max(1, len(fit.budgets) - 1))
        ax_l.scatter(b.params, b.losses, color=color, s=15, zorder=3)
        xs = np.geomspace(b.params.min() / 1.3, b.params.max() * 1.3, 100)
        ax_l.plot(xs, b.curve(xs), color=color, lw=1, label=f"C = {b.flops:.2g}")
        if b.n_opt is not None:
            ax_l.scatter([b.n_opt], [b.loss_opt], marker="*", s=90, color=color,
                         edgecolor="k", zorder=4)
    ax_l.set(xscale="log", xlabel="parameters N", ylabel=ylabel, title="iso-FLOP curves")
    ax_l.legend(fontsize=7)
    warn_on_axes(ax_l, (extra_warnings or []) + fit.warnings)

    on = [b for b in fit.budgets if b.n_opt is not None]
    for ax, what in ((ax_n, "N"), (ax_d, "D")):
        c = np.array([b.flops for b in on])
        if not len(c):
            continue
        if what == "N":
            y = np.array([b.n_opt for b in on])
            lo = np.array([b.n_opt_interval[0] for b in on])
            hi = np.array([b.n_opt_interval[1] for b in on])
        else:
            y = c / (6 * np.array([b.n_opt for b in on]))
            lo = c / (6 * np.array([b.n_opt_interval[1] for b in on]))
            hi = c / (6 * np.array([b.n_opt_interval[0] for b in on]))
        yerr = np.clip(np.vstack([y - lo, hi - y]), 0, None)
        ax.errorbar(c, y, yerr=np.nan_to_num(yerr), fmt="o", color="k", capsize=3,
                    label=f"{what}* per budget (95% CI)")
        if fit.a is not None:
            cs = np.geomspace(c.min() / 2, c.max() * 2, 50)
            n_fit = fit.optimal_params(cs)
            curve = n_fit if what == "N" else cs / (6 * n_fit)
            exp, (_, elo, ehi) = ((fit.a, fit.a_interval) if what == "N"
                                  else (fit.b, fit.b_interval))
            ax.plot(cs, curve, "C0-", label=f"approach 2: ∝ C^{exp:.2f} [{elo:.2f}, {ehi:.2f}]")
            if surface is not None:
                n3 = surface.optimal_params(cs)
                ax.plot(cs, n3 if what == "N" else cs / (6 * n3), "C3--",
                        label=f"approach 3: ∝ C^{surface.a if what == 'N' else 1 - surface.a:.2f}")
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)",
               ylabel="parameters N*" if what == "N" else "tokens D*",
               title=f"compute-optimal {'size' if what == 'N' else 'tokens'}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
