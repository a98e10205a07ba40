"""Model-size sweeps: expand a sweep config into run configs, run them, or print launch lines.

A sweep config (e.g. `experiments/sweep.py:tiny`) is an ordinary run config plus a `sweep`
section: the member shapes as "layers,width,heads;..." and a budget per member, either tokens
(every member sees the same D) or FLOPs (every member spends the same C = 6·N·D, so
D = C / (6·N), N the non-embedding parameters). Several budgets ("1e11;1e12") with one size
list per budget ("...|...") make a grid, e.g. an iso-FLOP grid. `members()` turns it into one
full run config per (budget, size); `run_sweep()` trains them one after another in this
process, each in `workdir/<member name>`:

- a member's name carries its shape, its budget and a fingerprint of everything else that
  decides its result (schedule, batch, data, seed: `identity()`), so a sweep rerun with another
  budget or schedule trains new members beside the old ones and never reuses them;
- a member whose metrics.jsonl has a `run_end` event, and whose config.json carries the same
  fingerprint, is finished and skipped;
- any other member is (re)started with `scaling.train.run`, which resumes from the latest
  checkpoint in its directory (members checkpoint at every evaluation).

So rerunning the same command after an interruption only does the remaining work. Each
member's config has a `sweep_member` section (its budget, N, D, 6·N·D and fingerprint), which
lands in its config.json for `scaling fit` to group runs by budget.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shlex
import time

import ml_collections

from scaling import storage

BUDGETS = ("tokens", "flops")
# Which N counts in C = 6·N·D: Kaplan et al. 2020 leave out the embeddings, Hoffmann et al.
# 2022 count every parameter (the difference explains much of their disagreement on N*(C):
# Pearce & Song 2024). In tiny models the embeddings and the head are a large part of the
# compute, so an iso-FLOP grid of them counts them.
FLOPS_PARAMS = ("non_embedding", "total")
LR_RULES = ("constant", "kaplan")
SWEEP_FILE = "sweep.json"   # workdir/sweep.json: the members and what happened to each

# Members too short for their schedule (`check_member`). A linear warmup longer than a fifth
# of the run leaves the cosine little room to decay, so the loss reflects the schedule more
# than the model size; under 50 updates the loss is still falling steeply wherever it stops.
# Both make sizes incomparable at one budget (the issue: a 33-step member with 20 warmup steps).
MIN_STEPS_PER_WARMUP_STEP = 5
MIN_STEPS = 50


def kaplan_lr(non_embedding_params: int) -> float:
    """Kaplan et al. 2020, eq. D.1: lr(N) ≈ 0.003239 − 0.0001395·ln(N)."""
    return 0.003239 - 0.0001395 * math.log(non_embedding_params)


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of a sweep."""
    index: int
    name: str                           # directory name under the sweep's workdir
    layers: int
    width: int
    heads: int
    non_embedding_params: int           # Kaplan's N (scaling.sizes.ParamCount.non_embedding)
    params: int                         # the whole model as published (backbone)
    tokens: int                         # tokens trained on: steps * batch * seq_len
    steps: int
    config: ml_collections.ConfigDict   # a complete single-run config
    budget: str = "tokens"              # sweep.budget: 'tokens' | 'flops'
    budget_value: float = 0.0           # this member's sweep.tokens or sweep.flops
    fingerprint: str = ""               # identity() hash, also in the name and config.json
    flops_params: str = "non_embedding"  # sweep.flops_params: which N is in C = 6·N·D

    @property
    def budget_params(self) -> int:
        """The N of C = 6·N·D: non-embedding (Kaplan) or total (Chinchilla) parameters."""
        return self.params if self.flops_params == "total" else self.non_embedding_params

    @property
    def flops_6nd(self) -> float:
        """Training compute as C = 6·N·D, N = budget_params."""
        return 6.0 * self.budget_params * self.tokens


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """'1,48,3;2,64,4' -> [(1, 48, 3), (2, 64, 4)] (layers, width, heads)."""
    sizes = []
    for part in filter(None, (p.strip() for p in str(text).split(";"))):
        fields = [f.strip() for f in part.split(",")]
        if len(fields) != 3 or not all(f.isdigit() and int(f) > 0 for f in fields):
            raise ValueError(f"sweep.sizes: {part!r} is not 'layers,width,heads' (positive "
                             "integers), e.g. '1,48,3;2,64,4'")
        sizes.append(tuple(int(f) for f in fields))
    if not sizes:
        raise ValueError("sweep.sizes: empty; give 'layers,width,heads;...'")
    return sizes


def parse_budgets(value, field: str) -> list[float]:
    """sweep.tokens / sweep.flops as a list: 8e5 -> [8e5]; '1e11;3e11' -> [1e11, 3e11]."""
    parts = [value] if isinstance(value, (int, float)) else \
        [p.strip() for p in str(value).split(";") if p.strip()]
    try:
        budgets = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"sweep.{field}: {value!r} is not a number or 'x;y;...' of numbers, "
                         "e.g. '1e11;3e11;1e12'") from None
    if not budgets or any(not math.isfinite(b) or b <= 0 for b in budgets):
        raise ValueError(f"sweep.{field}: must be positive, got {value}")
    return budgets


def grid(config) -> list[tuple[float, list[tuple[int, int, int]]]]:
    """[(budget, sizes), ...]: one entry per value of the sweep's budget field.

    sweep.sizes is one size list for every budget, or one per budget separated by '|'
    (an iso-FLOP grid centres each budget's sizes on its own optimum).
    """
    s = config.sweep
    budgets = parse_budgets(s[s.budget], s.budget)
    groups = [g for g in str(s.sizes).split("|")]
    if len(groups) not in (1, len(budgets)):
        raise ValueError(f"sweep.sizes: {len(groups)} '|'-separated size lists for "
                         f"{len(budgets)} budgets in sweep.{s.budget}; give one list, or one "
                         "per budget")
    sizes = [parse_sizes(g) for g in groups]
    return [(b, sizes[i if len(sizes) > 1 else 0]) for i, b in enumerate(budgets)]


def validate_sweep(config) -> None:
    """One-line ValueErrors naming the sweep field."""
    if "sweep" not in config:
        raise ValueError("--config: not a sweep config (no `sweep` section); use e.g. "
                         "experiments/sweep.py:tiny")
    s = config.sweep
    if s.budget not in BUDGETS:
        raise ValueError(f"sweep.budget: unknown {s.budget!r}; allowed: 'tokens', 'flops'")
    if s.evals < 1:
        raise ValueError(f"sweep.evals: must be >= 1, got {s.evals}")
    if s.get("lr_rule", "constant") not in LR_RULES:
        raise ValueError(f"sweep.lr_rule: unknown {s.lr_rule!r}; allowed: 'constant', "
                         "'kaplan'")
    if s.mlp_ratio <= 0:
        raise ValueError(f"sweep.mlp_ratio: must be positive, got {s.mlp_ratio}")
    if s.get("flops_params", "non_embedding") not in FLOPS_PARAMS:
        raise ValueError(f"sweep.flops_params: unknown {s.flops_params!r}; allowed: "
                         "'non_embedding', 'total'")
    grid(config)


# What decides a member's result beyond its shape and budget: the sections and fields hashed
# into its fingerprint. Left out: names, logging, evaluation cadence, checkpointing, layout
# (parallel), metrics and where data is stored or how it is read (data_dir, workers, ...).
IDENTITY_SECTIONS = ("model", "optim", "data", "task")
IDENTITY_TRAIN_FIELDS = ("steps", "batch_size", "seed")
NOT_IDENTITY = {"model": ("name",),
                "data": ("data_dir", "download", "worker_count", "read_threads",
                         "prefetch_batches")}


def identity(config, budget: str, budget_value: float) -> dict:
    """The fields that make a member the run it is: budget, shape, schedule, batch, data."""
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out = {"budget": budget, "budget_value": float(budget_value)}
    for section in IDENTITY_SECTIONS:
        out[section] = {k: v for k, v in sorted(c.get(section, {}).items())
                        if k not in NOT_IDENTITY.get(section, ())}
    out["train"] = {k: c["train"][k] for k in IDENTITY_TRAIN_FIELDS}
    out["checkpoint.init_from"] = c.get("checkpoint", {}).get("init_from", "")
    return out


def fingerprint(ident: dict) -> str:
    """8 hex digits of the SHA-256 of identity() as canonical JSON."""
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def budget_tag(budget: str, value: float) -> str:
    """'tokens', 8e5 -> 'D800k'; 'flops', 3e11 -> 'C3e11' (readable in a directory name)."""
    if budget == "tokens":
        for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
            if value >= scale:
                return f"D{value / scale:.4g}{unit}"
        return f"D{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"C{float(mantissa):g}e{int(exponent)}"


def members(config) -> list[Member]:
    """Expand a sweep config into its runs: budget by budget, smallest size first.

    Every member is the sweep config without its `sweep` section, with the member's shape,
    train.steps from the budget, optim.lr from sweep.lr_rule, eval_every so it is evaluated
    `sweep.evals` times (the last at its final step), a checkpoint at every evaluation and a
    `sweep_member` section recording its budget and fingerprint.
    """
    from scaling.models import model_spec  # noqa: PLC0415  (JAX: parameter counting)
    from scaling.sizes import count_params  # noqa: PLC0415

    validate_sweep(config)
    s = config.sweep
    shared = config.to_dict()
    shared.pop("sweep")
    tokens_per_step = config.train.batch_size * config.data.seq_len
    out = []
    for budget_value, sizes in grid(config):
        for layers, width, heads in sizes:
            index = len(out)
            c = ml_collections.ConfigDict(shared)
            c.model.update(num_layers=layers, width=width, num_heads=heads,
                           mlp_dim=int(s.mlp_ratio * width))
            counts = count_params(model_spec(c))   # one-line ValueError on a bad shape
            n = counts.non_embedding
            flops_params = s.get("flops_params", "non_embedding")
            n_budget = counts.backbone if flops_params == "total" else n
            tokens = budget_value if s.budget == "tokens" else budget_value / (6.0 * n_budget)
            steps = max(int(s.min_steps), math.ceil(tokens / tokens_per_step))
            eval_every = max(1, math.ceil(steps / s.evals))
            c.train.steps = steps
            c.train.eval_every = eval_every
            c.train.log_every = max(1, min(c.train.log_every, eval_every))
            c.checkpoint.every = eval_every if eval_every < steps else 0
            if s.get("lr_rule", "constant") == "kaplan":
                c.optim.lr = round(kaplan_lr(n), 6)
            key = fingerprint(identity(c, s.budget, budget_value))
            name = f"{index}-L{layers}-d{width}-{budget_tag(s.budget, budget_value)}-{key}"
            c.model.name = f"sweep-{s.name}-{index}-L{layers}-d{width}"
            c.experiment = f"sweep:{s.name}.{index}"
            m = Member(index=index, name=name, layers=layers, width=width, heads=heads,
                       non_embedding_params=n, params=counts.backbone,
                       tokens=steps * tokens_per_step, steps=steps, config=c,
                       budget=s.budget, budget_value=float(budget_value), fingerprint=key,
                       flops_params=flops_params)
            c.sweep_member = ml_collections.ConfigDict(member_record(m, s.name))
            out.append(m)
    return out


def member_record(m: Member, sweep_name: str) -> dict:
    """The `sweep_member` config section: what `scaling fit` groups and plots runs by.

    budget_flops is the member's compute budget C (sweep.flops) in a flops sweep and 0.0 in a
    tokens sweep; budget_tokens likewise; flops_6nd is what it actually spends, 6·N·D with D
    rounded up to whole steps and N = budget_params, the non-embedding or total parameter
    count as flops_params says.
    """
    return {"sweep": sweep_name, "index": m.index, "budget": m.budget,
            "budget_flops": m.budget_value if m.budget == "flops" else 0.0,
            "budget_tokens": m.budget_value if m.budget == "tokens" else 0.0,
            "non_embedding_params": m.non_embedding_params, "params": m.params,
            "flops_params": m.flops_params, "budget_params": m.budget_params,
            "tokens": m.tokens,
            "steps": m.steps, "flops_6nd": m.flops_6nd, "fingerprint": m.fingerprint}


def check_member(m: Member) -> str | None:
    """Why a member is too short to compare with its siblings, with the fix; None if fine.

    Flags a warmup longer than 1/MIN_STEPS_PER_WARMUP_STEP of the run, fewer than MIN_STEPS
    updates (the global batch is too large for the budget), and a flops member that
    sweep.min_steps pushed above its budget C.
    """
    warmup = int(m.config.optim.warmup_steps)
    raise_budget = f"raise sweep.{m.budget}"
    if m.steps < MIN_STEPS_PER_WARMUP_STEP * warmup:
        return (f"{m.name}: {m.steps} steps for optim.warmup_steps={warmup} (needs >= "
                f"{MIN_STEPS_PER_WARMUP_STEP}x warmup = {MIN_STEPS_PER_WARMUP_STEP * warmup}); "
                f"{raise_budget} or lower optim.warmup_steps")
    if m.steps < MIN_STEPS:
        return (f"{m.name}: {m.steps} steps (needs >= {MIN_STEPS}): the global batch of "
                f"{m.config.train.batch_size} x {m.config.data.seq_len} tokens is too large for "
                f"its budget; {raise_budget} or lower train.batch_size")
    if m.budget == "flops" and m.flops_6nd > 1.1 * m.budget_value:
        return (f"{m.name}: spends 6ND={m.flops_6nd:.3g}, {m.flops_6nd / m.budget_value:.2f}x "
                f"its budget sweep.flops={m.budget_value:.3g} ({m.steps} steps, at least "
                f"sweep.min_steps); raise sweep.flops or lower sweep.min_steps")
    return None


def is_finished(run_dir: str) -> bool:
    """True when the run's metrics.jsonl records a `run_end` event."""
    from scaling.runs import read_run  # noqa: PLC0415

    return storage.path(storage.join(run_dir, "metrics.jsonl")).is_file() and \
        read_run(run_dir).run_end is not None


def stored_fingerprint(run_dir: str) -> str | None:
    """The sweep_member.fingerprint of run_dir/config.json, or None (no such file or field)."""
    try:
        return json.loads(storage.read_text(storage.join(run_dir, "config.json"))
                          )["sweep_member"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_identity(m: Member, run_dir: str) -> None:
    """Raise a one-line ValueError if run_dir holds a run that is not this member.

    A directory without config.json has not started training yet and is anyone's.
    """
    if not storage.path(storage.join(run_dir, "config.json")).is_file():
        return
    stored = stored_fingerprint(run_dir)
    if stored != m.fingerprint:
        raise ValueError(f"sweep: {run_dir} holds another run (fingerprint {stored}, this "
                         f"member's {m.fingerprint}); move it away or use another --workdir")


def member_state(m: Member, run_dir: str) -> tuple[str, int | None]:
    """('done' | 'partial' | 'missing' | 'other run', last logged step or None)."""
    from scaling.runs import read_run, summarize  # noqa: PLC0415

    if not storage.path(run_dir).is_dir():
        return "missing", None
    if storage.path(storage.join(run_dir, "config.json")).is_file() and \
            stored_fingerprint(run_dir) != m.fingerprint:
        return "other run", None
    run = read_run(run_dir)
    if run.run_end is not None:
        return "done", m.steps
    return "partial", summarize(run)["step"] or 0


def status_lines(sweep_members: list[Member], workdir: str) -> list[str]:
    """`scaling sweep --status`: a table of the members and their state; trains nothing.

    Directories in workdir that are no member of this sweep (other budgets, schedules or
    data) are counted at the end: they are kept, never reused.
    """
    rows = [("member", "N", "budget", "tokens", "6ND", "steps", "state")]
    for m in sweep_members:
        state, step = member_state(m, storage.join(workdir, m.name))
        if state == "partial":
            state = f"partial (last step {step} of {m.steps})"
        rows.append((m.name, f"{m.budget_params:,}",
                     f"{m.budget}={m.budget_value:.3g}", f"{m.tokens:,}",
                     f"{m.flops_6nd:.3g}", str(m.steps), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    names = {m.name for m in sweep_members}
    root = storage.path(workdir)
    others = sorted(d.name for d in (root.iterdir() if root.is_dir() else [])
                    if d.name not in names and d.is_dir())
    if others:
        lines.append(f"{len(others)} other run dir(s) in {workdir}, not members of this sweep "
                     f"(another budget, schedule or data): {', '.join(others)}")
    return lines


# Fields that define a member beyond the shared config: an emitted command sets them
# explicitly, so it trains exactly this member whatever sweep overrides were given.
MEMBER_FIELDS = ("model.num_layers", "model.width", "model.num_heads", "model.mlp_dim",
                 "optim.lr", "train.steps", "train.eval_every", "train.log_every",
                 "checkpoint.every", "model.name", "experiment",
                 *(f"sweep_member.{k}" for k in ("sweep", "index", "budget", "budget_flops",
                                                 "budget_tokens", "non_embedding_params",
                                                 "params", "flops_params", "budget_params",
                                                 "tokens", "steps", "flops_6nd",
                                                 "fingerprint")))


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def launch_commands(config_arg: str, workdir: str, sweep_members: list[Member],
                    overrides: list[str]) -> list[str]:
    """One `scaling train` command line per member, for a cluster's job launcher.

    Args:
      config_arg: the sweep's --config value, e.g. 'experiments/sweep.py:tiny'.
      workdir: the sweep's workdir; member K trains in workdir/<name of K>.
      sweep_members: members(config).
      overrides: the sweep's own `--config.x=v` arguments; `--config.sweep.*` ones are left
        out (the member config has no sweep section), their effect is in the member fields.
    """
    kept = [o for o in overrides if not o.startswith("--config.sweep.")]
    lines = []
    for m in sweep_members:
        explicit = [f"--config.{f}={_get(m.config, f)}" for f in MEMBER_FIELDS]
        argv = ["scaling", "train", "--config", f"{config_arg}.{m.index}",
                "--workdir", storage.join(workdir, m.name), *kept, *explicit]
        lines.append(" ".join(shlex.quote(a) for a in argv))
    return lines


def run_sweep(sweep_members: list[Member], workdir: str, train_fn=None, log=print) -> dict:
    """Train every unfinished member, one after another, in workdir/<name>.

    Args:
      sweep_members: members(config).
      workdir: the sweep directory.
      train_fn: `(config, run_dir) -> summary`; default `scaling.train.run` (tests pass a
        wrapper that pins one device).
      log: where progress lines go.

    Returns:
      {"ran": [names trained now], "skipped": [names already finished], "wall_s": seconds,
       "per_run_s": {name: seconds}}; also written to workdir/sweep.json.

    Raises:
      ValueError: one line, before anything trains, if a member's directory holds a run
        with another fingerprint (check_identity).
    """
    if train_fn is None:
        from scaling.train import run as train_fn  # noqa: PLC0415
    for m in sweep_members:
        check_identity(m, storage.join(workdir, m.name))
    storage.path(workdir).mkdir(parents=True, exist_ok=True)
    ran, skipped, per_run = [], [], {}
    start = time.perf_counter()
    for m in sweep_members:
        run_dir = storage.join(workdir, m.name)
        header = (f"[{m.index + 1}/{len(sweep_members)}] {m.name}: "
                  f"N={m.budget_params:,} {m.flops_params.replace('_', '-')}, {m.steps} steps, "
                  f"{m.tokens:,} tokens, C=6ND={m.flops_6nd:.3g}")
        if is_finished(run_dir):
            log(f"{header}: finished earlier, skipped")
            skipped.append(m.name)
            continue
        log(f"{header}{': resuming' if storage.path(run_dir).is_dir() else ''}")
        t = time.perf_counter()
        train_fn(m.config, run_dir)
        per_run[m.name] = time.perf_counter() - t
        if is_finished(run_dir):
            ran.append(m.name)
        log(f"{m.name}: {per_run[m.name]:.0f}s")
        if not is_finished(run_dir):   # stopped by a signal: do not start the next member
            log(f"{m.name}: stopped before its end; rerun the same command to resume")
            break
    summary = {"ran": ran, "skipped": skipped, "wall_s": time.perf_counter() - start,
               "per_run_s": per_run,
               "members": [{"name": m.name, "layers": m.layers, "width": m.width,
                            "heads": m.heads, "params": m.params,
                            **member_record(m, m.config.sweep_member.sweep)}
                           for m in sweep_members]}
    storage.write_text_atomic(storage.join(workdir, SWEEP_FILE), json.dumps(summary, indent=1))
    return summary
