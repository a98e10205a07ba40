"""Model-size sweeps: expand a sweep config into run configs, run them, or print launch lines.

A sweep config (e.g. `experiments/sweep.py:tiny`) is an ordinary run config plus a `sweep`
section: the member shapes as "layers,width,heads;..." and a budget per member, either tokens
(every member sees the same D) or FLOPs (every member spends the same C = 6·N·D, so
D = C / (6·N), N the non-embedding parameters). `members()` turns it into one full run config
per size; `run_sweep()` trains them one after another in this process, each in
`workdir/<member name>`:

- a member whose metrics.jsonl has a `run_end` event is finished and skipped;
- any other member is (re)started with `scaling.train.run`, which resumes from the latest
  checkpoint in its directory (members checkpoint at every evaluation).

So rerunning the same command after an interruption only does the remaining work.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import time

import ml_collections

from scaling import storage

BUDGETS = ("tokens", "flops")
LR_RULES = ("constant", "kaplan")


def kaplan_lr(non_embedding_params: int) -> float:
    """Kaplan et al. 2020, eq. D.1: lr(N) ≈ 0.003239 − 0.0001395·ln(N)."""
    return 0.003239 - 0.0001395 * math.log(non_embedding_params)
SWEEP_FILE = "sweep.json"   # workdir/sweep.json: the members and what happened to each


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

    @property
    def flops_6nd(self) -> float:
        """Training compute as C = 6·N·D (Kaplan, non-embedding N)."""
        return 6.0 * self.non_embedding_params * self.tokens


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


def validate_sweep(config) -> None:
    """One-line ValueErrors naming the sweep field."""
    if "sweep" not in config:
        raise ValueError("--config: not a sweep config (no `sweep` section); use e.g. "
                         "experiments/sweep.py:tiny")
    s = config.sweep
    if s.budget not in BUDGETS:
        raise ValueError(f"sweep.budget: unknown {s.budget!r}; allowed: 'tokens', 'flops'")
    if s.budget == "tokens" and s.tokens <= 0:
        raise ValueError(f"sweep.tokens: must be positive, got {s.tokens}")
    if s.budget == "flops" and s.flops <= 0:
        raise ValueError(f"sweep.flops: must be positive, got {s.flops}")
    if s.evals < 1:
        raise ValueError(f"sweep.evals: must be >= 1, got {s.evals}")
    if s.get("lr_rule", "constant") not in LR_RULES:
        raise ValueError(f"sweep.lr_rule: unknown {s.lr_rule!r}; allowed: 'constant', "
                         "'kaplan'")
    if s.mlp_ratio <= 0:
        raise ValueError(f"sweep.mlp_ratio: must be positive, got {s.mlp_ratio}")
    parse_sizes(s.sizes)


def members(config) -> list[Member]:
    """Expand a sweep config into its runs, smallest first.

    Every member is the sweep config without its `sweep` section, with the member's shape,
    train.steps from the budget, optim.lr from sweep.lr_rule, eval_every so it is evaluated
    `sweep.evals` times (the last at its final step) and a checkpoint at every evaluation.
    """
    from scaling.models import model_spec  # noqa: PLC0415  (JAX: parameter counting)
    from scaling.sizes import count_params  # noqa: PLC0415

    validate_sweep(config)
    s = config.sweep
    shared = config.to_dict()
    shared.pop("sweep")
    tokens_per_step = config.train.batch_size * config.data.seq_len
    out = []
    for index, (layers, width, heads) in enumerate(parse_sizes(s.sizes)):
        c = ml_collections.ConfigDict(shared)
        c.model.update(num_layers=layers, width=width, num_heads=heads,
                       mlp_dim=int(s.mlp_ratio * width))
        name = f"{index}-L{layers}-d{width}"
        c.model.name = f"sweep-{s.name}-{name}"
        c.experiment = f"sweep:{s.name}.{index}"
        counts = count_params(model_spec(c))   # one-line ValueError on a bad shape
        n = counts.non_embedding
        tokens = s.tokens if s.budget == "tokens" else s.flops / (6.0 * n)
        steps = max(int(s.min_steps), math.ceil(tokens / tokens_per_step))
        eval_every = max(1, math.ceil(steps / s.evals))
        c.train.steps = steps
        c.train.eval_every = eval_every
        c.train.log_every = max(1, min(c.train.log_every, eval_every))
        c.checkpoint.every = eval_every if eval_every < steps else 0
        if s.get("lr_rule", "constant") == "kaplan":
            c.optim.lr = round(kaplan_lr(n), 6)
        out.append(Member(index=index, name=name, layers=layers, width=width, heads=heads,
                          non_embedding_params=n, params=counts.backbone,
                          tokens=steps * tokens_per_step, steps=steps, config=c))
    return out


def is_finished(run_dir: str) -> bool:
    """True when the run's metrics.jsonl records a `run_end` event."""
    from scaling.runs import read_run  # noqa: PLC0415

    return storage.path(storage.join(run_dir, "metrics.jsonl")).is_file() and \
        read_run(run_dir).run_end is not None


# Fields that define a member beyond the shared config: an emitted command sets them
# explicitly, so it trains exactly this member whatever sweep overrides were given.
MEMBER_FIELDS = ("model.num_layers", "model.width", "model.num_heads", "model.mlp_dim",
                 "optim.lr", "train.steps", "train.eval_every", "train.log_every",
                 "checkpoint.every")


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
    """
    if train_fn is None:
        from scaling.train import run as train_fn  # noqa: PLC0415
    storage.path(workdir).mkdir(parents=True, exist_ok=True)
    ran, skipped, per_run = [], [], {}
    start = time.perf_counter()
    for m in sweep_members:
        run_dir = storage.join(workdir, m.name)
        header = (f"[{m.index + 1}/{len(sweep_members)}] {m.name}: "
                  f"N={m.non_embedding_params:,} non-embedding, {m.steps} steps, "
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
                            "heads": m.heads, "non_embedding_params": m.non_embedding_params,
                            "params": m.params, "steps": m.steps, "tokens": m.tokens,
                            "flops_6nd": m.flops_6nd} for m in sweep_members]}
    storage.write_text_atomic(storage.join(workdir, SWEEP_FILE), json.dumps(summary, indent=1))
    return summary
