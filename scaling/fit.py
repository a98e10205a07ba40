"""Scaling-law fits: L(N) = E + A·N^(-α) and L(C) = E + B·C^(-β), with bootstrap intervals.

Conventions (Kaplan et al. 2020):
- N is the non-embedding parameter count (run_start's `non_embedding_params`).
- C = 6·N·D, D the tokens trained on so far (steps · batch · seq_len). This is Kaplan's C,
  not the logged `flops_seen` (6N + 12·L·T·d per token, N including the output projection),
  so that C and N use the same N.

Fitting is `scipy.optimize.curve_fit` (trust-region reflective, bounds E >= 0, 0 < α < 5)
on the loss itself (absolute residuals), with N or C divided by its geometric mean so the
three constants are on similar scales; a few starting values of E are tried and the lowest
residual wins. Intervals: a seeded bootstrap that resamples the points with replacement and
refits (resamples with fewer than 3 distinct x are dropped); each constant's median and
2.5-97.5 % percentiles are reported. With few points (a 5-size sweep) the intervals are
honest about how little 5 points pin down 3 constants: expect them wide.

L(C) is fitted on the compute-efficient frontier: every run's eval losses against C are
interpolated (linear in log C) onto a log-spaced grid of C, and at each grid point the
lowest loss of any run covering it is the envelope (unless a run that ended at a smaller C
already did better: then the point is not on the frontier and is left out); the run that
attains it gives N*(C).
If the envelope has fewer than 5 points, or the fitted E sits on a bound (0, or the lowest
envelope loss: E not identified), L(C) is fitted as a pure power law B·C^(-β) instead
(linear least squares in log-log), and the report says so. N*(C) ∝ C^a is fitted (log-log
least squares) only when at least 3 distinct model sizes attain the envelope; otherwise it
is reported as not identifiable from these runs.

Every fit carries `warnings` (scaling.fit_checks): losses that do not fall with size, too
few points on the frontier, a constant at its bound, or intervals spanning orders of
magnitude. Reports print them first and then the constants only as rough values.

The loss is the final eval loss (nats/token) or, with metric='bpb', eval bits per byte,
which does not depend on the tokenizer, so runs with different tokenizers share one fit.
Iso-FLOP analysis (approach 2) is in scaling.isoflop, the L(N, D) fit (approach 3) in
scaling.approach3.

No JAX here; matplotlib only in `plot()`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings

import numpy as np
from scipy.optimize import curve_fit

from scaling import fit_checks

PARAMS = ("E", "A", "alpha")
METRICS = {"loss": "eval_loss", "bpb": "eval_bpb"}      # --metric -> eval record field
UNITS = {"loss": "eval loss (nats/token)", "bpb": "eval bits per byte"}


class FitError(ValueError):
    """Data that cannot support the requested fit; the message is one line."""


@dataclasses.dataclass
class PowerLawFit:
    """L(x) = E + A·x^(-alpha) (or A·x^(-alpha) with form='pure')."""
    E: float
    A: float
    alpha: float
    form: str                                   # "offset" (E + A x^-a) | "pure" (A x^-a)
    intervals: dict[str, tuple[float, float, float]]  # name -> (median, 2.5 %, 97.5 %)
    n_points: int
    n_distinct: int
    boot_used: int                              # bootstrap refits that succeeded
    boot_draws: np.ndarray                      # (boot_used, 3) E, A, alpha per refit
    rmse: float
    note: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)

    def __call__(self, x):
        return power_law(np.asarray(x, dtype=float), self.E, self.A, self.alpha)

    def band(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise interval of the fitted curve at x from the bootstrap refits."""
        x = np.asarray(x, dtype=float)
        if len(self.boot_draws) == 0:
            y = self(x)
            return y, y
        curves = np.stack([power_law(x, *draw) for draw in self.boot_draws])
        lo, hi = 50 * (1 - level), 50 * (1 + level)
        return np.percentile(curves, lo, axis=0), np.percentile(curves, hi, axis=0)


def power_law(x, E, A, alpha):
    """E + A·x^(-alpha)."""
    return E + A * np.power(x, -alpha)


def one_blas_thread():
    """A context with one BLAS thread, where threadpoolctl is installed (else no change).

    The optimizers here call BLAS on vectors of a few elements; a multi-threaded BLAS on
    busy cores makes each call wait on its threads, and a bootstrap of such fits many times
    slower than on one thread.
    """
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_once(x, y, starts, form):
    """Least-squares (E, A, alpha) in the original x units, or None if nothing converged."""
    scale = float(np.exp(np.mean(np.log(x))))        # fit on x / geometric mean
    xs = x / scale
    best = None
    if form == "pure":
        # log y = log A' - alpha log xs: linear least squares.
        slope, intercept = np.polyfit(np.log(xs), np.log(y), 1)
        params = (0.0, float(np.exp(intercept)), float(-slope))
        sse = float(np.sum((power_law(xs, *params) - y) ** 2))
        best = (sse, params)
    else:
        ymin = float(np.min(y))
        for e0, a0 in starts:
            p0 = (min(e0, 0.99 * ymin), max(a0, 1e-6), 0.3)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    params, _ = curve_fit(power_law, xs, y, p0=p0, method="trf",
                                          bounds=([0.0, 0.0, 1e-4], [ymin, np.inf, 5.0]),
                                          maxfev=5000)
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((power_law(xs, *params) - y) ** 2))
            if best is None or sse < best[0]:
                best = (sse, tuple(float(p) for p in params))
    if best is None:
        return None
    E, A_scaled, alpha = best[1]
    return E, A_scaled * scale ** alpha, alpha      # A·(x/s)^-a = (A·s^a)·x^-a


def fit_power_law(x, y, *, form: str = "offset", boot: int = 1000, seed: int = 0,
                  what: str = "L(N)") -> PowerLawFit:
    """Fit y = E + A·x^(-alpha) (form='offset') or A·x^(-alpha) (form='pure').

    Args:
      x: sizes (parameters or FLOPs), positive.
      y: losses, positive.
      form: 'offset' or 'pure'.
      boot: bootstrap resamples for the intervals (0: none).
      seed: bootstrap seed (results are reproducible).
      what: name used in error messages.

    Raises:
      FitError: fewer than 3 distinct x, non-positive values, or no fit converged.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    distinct = len(np.unique(x))
    if distinct < 3:
        raise FitError(f"{what}: needs at least 3 distinct sizes to fit 3 constants "
                       f"(E, A, alpha); got {distinct}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise FitError(f"{what}: sizes and losses must be positive")
    with one_blas_thread():
        return _fit_power_law(x, y, distinct, form, boot, seed, what)


def _fit_power_law(x, y, distinct, form, boot, seed, what) -> PowerLawFit:
    ymin = float(np.min(y))
    starts = [(0.0, float(np.ptp(y)) + 1e-3), (0.5 * ymin, 0.5 * ymin),
              (0.9 * ymin, 0.1 * ymin + 1e-3)]
    point = _fit_once(x, y, starts, form)
    if point is None:
        raise FitError(f"{what}: the least-squares fit did not converge")
    E, A, alpha = point

    rng = np.random.default_rng(seed)
    draws = []
    scale = float(np.exp(np.mean(np.log(x))))
    warm = [(E, A * scale ** (-alpha))]               # start refits at the point estimate
    for _ in range(boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) < 3:
            continue
        refit = _fit_once(x[idx], y[idx], warm, form) or _fit_once(x[idx], y[idx], starts,
                                                                  form)
        if refit is not None:
            draws.append(refit)
    draws = np.array(draws, dtype=float).reshape(-1, 3)
    intervals = {}
    for k, name in enumerate(PARAMS):
        if len(draws):
            col = draws[:, k]
            intervals[name] = (float(np.median(col)), float(np.percentile(col, 2.5)),
                               float(np.percentile(col, 97.5)))
        else:
            intervals[name] = (point[k], math.nan, math.nan)
    rmse = float(np.sqrt(np.mean((power_law(x, E, A, alpha) - y) ** 2)))
    size = "C" if "(C)" in what else "N"
    checks = fit_checks.trend_warnings(x, y, size=size)
    checks += fit_checks.frontier_warnings(int(fit_checks.frontier_mask(x, y).sum()),
                                           3 if form == "offset" else 2, size=size)
    bounds = {"alpha": (1e-4, 5.0)}
    if form == "offset":
        bounds["E"] = (0.0, ymin)
    checks += fit_checks.bound_warnings({"E": E, "alpha": alpha}, bounds)
    checks += fit_checks.interval_warnings(intervals, coefficients=("A",),
                                           exponents=("alpha",))
    return PowerLawFit(E=E, A=A, alpha=alpha, form=form, intervals=intervals,
                       n_points=len(x), n_distinct=distinct, boot_used=len(draws),
                       boot_draws=draws, rmse=rmse, warnings=[f"{what}: {w}" for w in checks])


# ----------------------------------------------------------------------------- from runs

@dataclasses.dataclass
class RunPoints:
    """What the fits need from one run directory."""
    name: str
    non_embedding_params: int
    final_loss: float | None            # eval loss at the end (None: unfinished / no eval)
    compute: np.ndarray                 # C = 6·N·D at each evaluation
    losses: np.ndarray                  # eval loss (or bits per byte) at each evaluation
    finished: bool
    tokens: float | None = None         # D: tokens trained on at the final evaluation
    budget_flops: float | None = None   # the sweep's compute budget C, where recorded


def budget_of(run) -> float | None:
    """The compute budget C = 6·N·D a flops sweep gave this run, None when not recorded.

    Read from config.json's sweep_member.budget_flops (written by `scaling sweep`; 0 in
    tokens sweeps), else its sweep.flops (budget 'flops'), else run_start's budget_flops.
    """
    from scaling.runs import number  # noqa: PLC0415

    member = (run.config or {}).get("sweep_member")
    if isinstance(member, dict):
        flops = number(member.get("budget_flops"))
        if flops is not None and flops > 0:
            return flops
    sweep = (run.config or {}).get("sweep")
    if isinstance(sweep, dict) and sweep.get("budget", "flops") == "flops":
        flops = number(sweep.get("flops"))
        if flops is not None and flops > 0:
            return flops
    flops = number(run.run_start.get("budget_flops"))
    return flops if flops is not None and flops > 0 else None


def budget_params_of(run) -> int | None:
    """The N that a flops sweep's C = 6·N·D counts (config.json's sweep_member.budget_params:
    all parameters or the non-embedding ones, per sweep.flops_params), None when not recorded."""
    from scaling.runs import number  # noqa: PLC0415

    member = (run.config or {}).get("sweep_member")
    n = number(member.get("budget_params")) if isinstance(member, dict) else None
    return int(n) if n is not None and n > 0 else None


def run_points(run, metric: str = "loss") -> tuple[RunPoints | None, str | None]:
    """(points, None) from a `scaling.runs.Run`, or (None, why it is unusable).

    metric: 'loss' (eval_loss, nats/token) or 'bpb' (eval_bpb, bits per byte).
    """
    from scaling.runs import number  # noqa: PLC0415

    key = METRICS[metric]
    n = number(run.run_start.get("non_embedding_params"))
    if n is None or n <= 0:
        return None, f"{run.name}: no run_start with non_embedding_params (not a run?)"
    steps, losses = run.series(key, run.evals)
    compute, kept, last_tokens = [], [], None
    for step, loss in zip(steps, losses):
        tokens = run.tokens_at(step)
        if tokens is not None and tokens > 0:
            compute.append(6.0 * n * tokens)
            kept.append(loss)
            last_tokens = tokens
    if not kept:
        return None, f"{run.name}: no {key} in its evals" + (
            " (bits per byte need a tokenizer that reports bytes)" if metric == "bpb" else "")
    final = number((run.run_end or {}).get(key))
    if final is None and run.run_end is not None:
        final = kept[-1]
    return RunPoints(run.name, int(n), final, np.array(compute), np.array(kept),
                     run.run_end is not None, last_tokens, budget_of(run)), None


@dataclasses.dataclass
class Envelope:
    compute: np.ndarray          # grid of C
    loss: np.ndarray             # lowest interpolated eval loss of any run at C
    params: np.ndarray           # N of the run attaining it: N*(C)
    run: list[str]               # its name


def envelope(points: list[RunPoints], grid_size: int = 40) -> Envelope:
    """The compute-efficient frontier of all runs' eval-loss-vs-C curves.

    On a log-spaced grid of C, each run that covers C (between its first and last
    evaluation) gives its loss there, interpolated linearly in log C; the lowest of those is
    the envelope, and its run gives N*(C). A grid point is left out when a run that already
    ENDED below that C reached a lower loss: it is not on the frontier (one would rather
    have trained that run), so the envelope falls monotonically, jumping across the gaps.
    """
    curves = [p for p in points if len(p.compute) >= 1]
    lo = min(float(p.compute.min()) for p in curves)
    hi = max(float(p.compute.max()) for p in curves)
    grid = np.geomspace(lo, hi, grid_size) if hi > lo else np.array([lo])
    env_c, env_l, env_n, env_r = [], [], [], []
    for c in grid:
        best, ended = None, math.inf
        for p in curves:
            cmin, cmax = p.compute.min(), p.compute.max()
            if cmax < c * (1 - 1e-9):
                ended = min(ended, float(p.losses.min()))
                continue
            if c < cmin * (1 - 1e-9):
                continue
            if len(p.compute) == 1:
                loss = float(p.losses[0])
            else:
                loss = float(np.interp(np.log(c), np.log(p.compute), p.losses))
            if best is None or loss < best[0]:
                best = (loss, p)
        if best is not None and best[0] <= ended and (not env_l or best[0] <= env_l[-1]):
            env_c.append(c)
            env_l.append(best[0])
            env_n.append(best[1].non_embedding_params)
            env_r.append(best[1].name)
    return Envelope(np.array(env_c), np.array(env_l), np.array(env_n, dtype=float), env_r)


@dataclasses.dataclass
class ScalingFits:
    loss_vs_params: PowerLawFit
    sizes: np.ndarray            # N of each finished run used for L(N)
    final_losses: np.ndarray
    envelope: Envelope | None
    loss_vs_compute: PowerLawFit | None
    optimal_params_exponent: float | None  # a in N*(C) ∝ C^a
    optimal_params_note: str
    notes: list[str]


def fit_runs(points: list[RunPoints], boot: int = 1000, seed: int = 0) -> ScalingFits:
    """L(N) on the finished runs' final eval losses, L(C) on the envelope, N*(C).

    Raises:
      FitError: fewer than 3 distinct model sizes with a final eval loss.
    """
    notes = []
    final = [p for p in points if p.finished and p.final_loss is not None]
    unfinished = [p.name for p in points if not p.finished]
    if unfinished:
        notes.append(f"unfinished runs left out of L(N) (used for L(C)): "
                     f"{', '.join(unfinished)}")
    sizes = np.array([p.non_embedding_params for p in final], dtype=float)
    losses = np.array([p.final_loss for p in final], dtype=float)
    distinct = len(np.unique(sizes))
    if distinct < 3:
        raise FitError(f"L(N) needs final eval losses of at least 3 model sizes; got "
                       f"{distinct} ({len(final)} finished run(s) of {len(points)})")
    l_of_n = fit_power_law(sizes, losses, boot=boot, seed=seed, what="L(N)")

    env = envelope(points)
    l_of_c, a, a_note = None, None, ""
    if len(env.compute) >= 3:
        form = "offset"
        if len(env.compute) < 5:
            form = "pure"
            notes.append("L(C): fewer than 5 envelope points; pure power law B·C^(-beta)")
        l_of_c = fit_power_law(env.compute, env.loss, form=form, boot=boot, seed=seed,
                               what="L(C)")
        at_bound = l_of_c.E <= 1e-9 or l_of_c.E >= (1 - 1e-3) * float(env.loss.min())
        if form == "offset" and at_bound:
            l_of_c = fit_power_law(env.compute, env.loss, form="pure", boot=boot, seed=seed,
                                   what="L(C)")
            notes.append("L(C): E was not identified (the fit put it on a bound: 0 or the "
                         "lowest loss); pure power law B·C^(-beta) instead")
        l_of_c.note = "fit on the lower envelope of eval loss vs C = 6·N·D"
        defining = len(set(env.run))
        if defining < 3:
            # The envelope's grid points are interpolated: count the runs behind them.
            l_of_c.warnings.append(
                f"L(C): its {len(env.compute)} envelope points come from only {defining} "
                "run(s): they trace a training curve, not a compute-efficient frontier")
        budgets = {round(float(p.compute[-1]) / (6.0 * p.non_embedding_params)) for p in final}
        if len(final) > 1 and len(budgets) == 1:
            notes.append("every run trained on the same number of tokens: the envelope's "
                         "N*(C) then follows from that budget (bigger runs reach more C), not "
                         "from compute-optimality; sweep.budget=flops sweeps are the test")
        winners = np.unique(env.params)
        if len(winners) >= 3:
            slope, _ = np.polyfit(np.log(env.compute), np.log(env.params), 1)
            a = float(slope)
            a_note = (f"N*(C) ∝ C^{a:.3f} (log-log least squares over {len(env.compute)} "
                      f"envelope points, {len(winners)} sizes attain it)")
        else:
            a_note = (f"N*(C) not identifiable: only {len(winners)} model size(s) attain the "
                      "envelope (needs 3; train longer or with an iso-FLOP budget)")
    else:
        notes.append("L(C): fewer than 3 envelope points; not fitted")
        a_note = "N*(C) not identifiable: no L(C) envelope"
    return ScalingFits(l_of_n, sizes, losses, env, l_of_c, a, a_note, notes)


# ----------------------------------------------------------------------------- output

def _fmt(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "n/a"


def format_fit(fit: PowerLawFit, x_name: str, slope_name: str) -> list[str]:
    """The fit's formula and constants; after failed checks, warnings and rough values only."""
    names = {"E": "E", "A": "A" if x_name == "N" else "B", "alpha": slope_name}
    formula = (f"L({x_name}) = E + {names['A']}·{x_name}^(-{slope_name})" if fit.form ==
               "offset" else f"L({x_name}) = {names['A']}·{x_name}^(-{slope_name})")
    lines = [f"{formula}   [{fit.n_points} points, {fit.n_distinct} distinct {x_name}, "
             f"rmse {fit.rmse:.4f}, bootstrap {fit.boot_used} refits]"]
    lines += [f"WARNING: {w}" for w in fit.warnings]
    if fit.warnings:
        lines.append("  the fit failed these checks: its constants are not estimates "
                     "(rough values only)")
    for key in PARAMS:
        if fit.form == "pure" and key == "E":
            continue
        value = getattr(fit, key)
        med, lo, hi = fit.intervals[key]
        if fit.warnings:
            lines.append(f"  {names[key]:<6} ~ {value:.2g}   (not identified; 95% CI "
                         f"[{lo:.2g}, {hi:.2g}])")
        else:
            lines.append(f"  {names[key]:<6} = {_fmt(value):>10}   95% CI [{_fmt(lo)}, "
                         f"{_fmt(hi)}]   (bootstrap median {_fmt(med)})")
    return lines


def format_report(fits: ScalingFits, metric: str = "loss") -> str:
    lines = [f"L(N): final {UNITS[metric]} vs non-embedding parameters"]
    lines += ["  " + line for line in format_fit(fits.loss_vs_params, "N", "alpha")]
    lines.append("  residuals (data - fit) per run:")
    for n, loss in sorted(zip(fits.sizes, fits.final_losses)):
        pred = fits.loss_vs_params(n)
        lines.append(f"    N={int(n):>12,}  {metric} {loss:.4f}  fit {pred:.4f}  "
                     f"residual {loss - pred:+.4f}")
    if fits.loss_vs_compute is not None:
        lines.append(f"L(C): envelope of {UNITS[metric]} vs C = 6·N·D")
        lines += ["  " + line for line in format_fit(fits.loss_vs_compute, "C", "beta")]
    lines.append(fits.optimal_params_note)
    lines += [f"note: {n}" for n in fits.notes]
    return "\n".join(lines)


def warn_on_axes(ax, messages: list[str]) -> None:
    """Failed checks written in red across a plot panel, so a figure cannot hide them."""
    if messages:
        import textwrap  # noqa: PLC0415
        text = "\n".join(textwrap.fill("WARNING: " + m, 80, subsequent_indent="   ")
                         for m in messages[:4])
        # Below the panel (under its x label), so that it hides no data.
        ax.text(0.0, -0.26, text, transform=ax.transAxes, fontsize=7, color="red",
                va="top", ha="left",
                bbox={"facecolor": "white", "edgecolor": "red"})


def plot(fits: ScalingFits, points: list[RunPoints], path: str, metric: str = "loss") -> None:
    """Two panels: loss vs N with the fit and its 95 % band; loss vs C with the envelope."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_n, ax_c) = plt.subplots(1, 2, figsize=(12, 4.5))
    f = fits.loss_vs_params
    xs = np.geomspace(fits.sizes.min() / 1.5, fits.sizes.max() * 1.5, 200)
    lo, hi = f.band(xs)
    ax_n.fill_between(xs, lo, hi, alpha=0.2, color="C0", label="95% bootstrap band")
    label = (f"E + A·N^-α, α={f.alpha:.3f} "
             f"[{f.intervals['alpha'][1]:.3f}, {f.intervals['alpha'][2]:.3f}]")
    if f.warnings:
        label = "E + A·N^-α: failed its checks (see warnings), not an estimate"
    ax_n.plot(xs, f(xs), color="C0", ls="--" if f.warnings else "-", label=label)
    ax_n.scatter(fits.sizes, fits.final_losses, color="k", zorder=3, label="final eval loss")
    ax_n.set(xscale="log", xlabel="non-embedding parameters N", ylabel=UNITS[metric],
             title="L(N)")
    ax_n.legend(fontsize=8)
    warn_on_axes(ax_n, f.warnings)

    for k, p in enumerate(sorted(points, key=lambda p: p.non_embedding_params)):
        ax_c.plot(p.compute, p.losses, "o-", ms=3, lw=1, alpha=0.7, color=f"C{k % 10}",
                  label=f"{p.name} (N={p.non_embedding_params:,})")
    if fits.envelope is not None and len(fits.envelope.compute):
        ax_c.plot(fits.envelope.compute, fits.envelope.loss, color="k", lw=2.5, alpha=0.4,
                  label="envelope")
    if fits.loss_vs_compute is not None:
        g = fits.loss_vs_compute
        cs = np.geomspace(fits.envelope.compute.min(), fits.envelope.compute.max(), 200)
        ax_c.plot(cs, g(cs), "k--", label=f"fit, β={g.alpha:.3f}")
    ax_c.set(xscale="log", xlabel="compute C = 6·N·D (FLOPs)", ylabel=UNITS[metric],
             title="L(C): eval loss vs compute")
    ax_c.legend(fontsize=7)
    if fits.loss_vs_compute is not None:
        warn_on_axes(ax_c, fits.loss_vs_compute.warnings)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
