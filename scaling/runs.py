"""Read run directories back: the one reader behind `scaling report` and `scaling plot`.

A run directory holds `metrics.jsonl` (schema in `scaling.metrics`) and, when the training
loop wrote it, `config.json` (the resolved config). Reading is forgiving, because the runs
worth looking at are often still going or were killed: a missing file, a truncated last line,
an unparsable line, an unknown field or a wrongly typed value each add ONE warning to
`Run.warnings` and the rest is read. Nothing here raises on bad data.

Resumed runs append to the same file and may repeat steps after rewinding to a checkpoint:
when a step goes backwards, the records of the abandoned segment from that step on are
dropped, so each step appears once, from the latest attempt.

This module imports neither JAX nor matplotlib, so `scaling report` starts quickly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

from scaling import storage

METRICS_FILE = "metrics.jsonl"      # = scaling.metrics.METRICS_FILE (not imported: keep this light)
CONFIG_FILE = "config.json"

# Fields of train and eval records (see scaling.metrics); anything else gets one warning.
KNOWN_FIELDS = {
    "step", "time", "loss", "accuracy", "nonfinite_steps", "lr", "grad_norm", "param_norm", "step_time_s", "data_wait_s",
    "tokens_per_s", "tokens_per_s_per_device", "model_tflops_per_device", "mfu", "hfu",
    "mfu_warning", "hfu_warning",
    "tokens_seen", "flops_seen", "goodput", "eval_loss", "eval_ppl", "eval_accuracy", "eval_bpb",
    "eval_f1", "eval_macro_f1", "eval_mcc", "eval_pearson", "eval_spearman", "eval_examples",
    "device_bytes_in_use", "device_peak_bytes", "device_bytes_limit", "host_peak_rss_bytes",
}
# Eval scores a fine-tuning run reports (`final_<name>` in summaries; eval_accuracy is also
# the token accuracy of pretraining objectives).
TASK_SCORES = ("eval_accuracy", "eval_f1", "eval_macro_f1", "eval_mcc", "eval_pearson",
               "eval_spearman")
KNOWN_PREFIXES = ("badput_",)
KNOWN_EVENTS = {"run_start", "compile", "run_end"}


@dataclasses.dataclass
class Run:
    """Everything read from one run directory."""
    path: Path
    name: str
    config: dict | None = None
    run_start: dict = dataclasses.field(default_factory=dict)   # merged over (re)starts
    compile: dict = dataclasses.field(default_factory=dict)     # the latest compile event
    run_end: dict | None = None
    train: list[dict] = dataclasses.field(default_factory=list)  # sorted by step, unique
    evals: list[dict] = dataclasses.field(default_factory=list)  # sorted by step, unique
    events: list[dict] = dataclasses.field(default_factory=list)  # every event, in order
    records_read: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)

    # ---- derived facts, None when the run does not say

    @property
    def model(self) -> str | None:
        name = self.run_start.get("model")
        if name is None and isinstance(self.config, dict):
            model = self.config.get("model")
            name = model.get("name") if isinstance(model, dict) else None
        return name if isinstance(name, str) else None

    @property
    def params(self) -> int | None:
        value = number(self.run_start.get("params"))
        return int(value) if value is not None else None

    @property
    def flops_per_token(self) -> float | None:
        return number(self.run_start.get("flops_per_token"))

    def sweep_member(self, key: str) -> float | None:
        """A number from config.json's `sweep_member` section (written by `scaling sweep`).

        budget_flops is the member's compute budget C = 6·N·D of a flops sweep (every member
        of one budget has the same value; 0 in tokens sweeps, so None here), budget_tokens
        that of a tokens sweep, flops_6nd what the member actually spent.
        """
        section = self.config.get("sweep_member") if isinstance(self.config, dict) else None
        value = number(section.get(key)) if isinstance(section, dict) else None
        return value if value else None

    @property
    def budget_flops(self) -> float | None:
        return self.sweep_member("budget_flops")

    def series(self, key: str, records: list[dict] | None = None) -> tuple[list, list]:
        """(steps, values) of a numeric field, skipping records without a number there."""
        steps, values = [], []
        for record in self.train if records is None else records:
            step, value = number(record.get("step")), number(record.get(key))
            if step is not None and value is not None:
                steps.append(step)
                values.append(value)
        return steps, values

    def tokens_at(self, step: float) -> float | None:
        """Tokens seen after `step` from run_start's batch and sequence length, if known."""
        batch, seq_len = number(self.run_start.get("batch_size")), number(
            self.run_start.get("seq_len"))
        if batch is None or seq_len is None:
            return None
        return step * batch * seq_len


def number(value: Any) -> float | None:
    """`value` as a finite float, or None (null, strings, bools, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _add_step_record(records: list[dict], record: dict) -> None:
    """Append, dropping an abandoned segment if the step went backwards (resume)."""
    step = number(record.get("step"))
    if step is None:
        return
    if records and number(records[-1].get("step")) is not None and step <= records[-1]["step"]:
        while records and records[-1]["step"] >= step:
            records.pop()
    records.append(record)


def _path(p: str | Path):
    """A pathlib.Path for local paths, an etils.epath.Path for URLs (gs://, s3://)."""
    return storage.path(p) if storage.is_url(p) else Path(p)


def _name(run_dir) -> str:
    resolved = run_dir if storage.is_url(run_dir) else run_dir.resolve()
    return resolved.name or str(run_dir)


def read_run(path: str | Path) -> Run:
    """Read one run directory (or a metrics.jsonl file), local or a URL. Never raises on bad
    content."""
    path = _path(path)
    if path.is_file():
        metrics_path, run_dir = path, path.parent
    else:
        metrics_path, run_dir = path / METRICS_FILE, path
    run = Run(path=run_dir, name=_name(run_dir))

    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            run.config = config if isinstance(config, dict) else None
        except (OSError, ValueError) as e:
            run.warnings.append(f"{config_path}: unreadable ({type(e).__name__}); ignored")

    if not metrics_path.is_file():
        what = "not a directory" if not run_dir.is_dir() else f"no {METRICS_FILE}"
        run.warnings.append(f"{run_dir}: {what} (not a run, or nothing logged yet)")
        return run
    try:
        data = metrics_path.read_bytes()
    except OSError as e:
        run.warnings.append(f"{metrics_path}: unreadable ({e.strerror or e})")
        return run

    lines = data.split(b"\n")
    complete_end = data.endswith(b"\n")
    bad_lines: list[int] = []
    stepless = 0
    unknown_fields: set[str] = set()
    unknown_events: set[str] = set()
    truncated = False
    over_peak: list[str] = []       # mfu_warning of each record that has one
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        is_last = index == len(lines) - 1      # only non-empty when the file lacks a final \n
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if is_last and not complete_end:
                truncated = True
            else:
                bad_lines.append(index + 1)
            continue
        run.records_read += 1
        kind = record.get("event")
        if kind is not None:
            run.events.append(record)
            if kind == "run_start":
                run.run_start.update(record)
            elif kind == "compile":
                run.compile = record
            elif kind == "run_end":
                run.run_end = record
            else:
                unknown_events.add(str(kind))
            continue
        if number(record.get("step")) is None:
            stepless += 1
            continue
        unknown_fields.update(k for k in record if k not in KNOWN_FIELDS
                              and not k.startswith(KNOWN_PREFIXES))
        if "eval_loss" in record or "eval_accuracy" in record:
            _add_step_record(run.evals, record)
        if any(k in record for k in ("loss", "tokens_per_s", "step_time_s")):
            _add_step_record(run.train, record)
        if isinstance(record.get("mfu_warning"), str):
            over_peak.append(record["mfu_warning"])

    if truncated:
        run.warnings.append(f"{metrics_path}: last line is incomplete (killed mid-write?); "
                            f"ignored")
    if bad_lines:
        run.warnings.append(f"{metrics_path}: {len(bad_lines)} unparsable line(s) skipped "
                            f"(line {', '.join(map(str, bad_lines[:5]))}"
                            f"{', ...' if len(bad_lines) > 5 else ''})")
    if stepless:
        run.warnings.append(f"{metrics_path}: {stepless} record(s) without a numeric step "
                            f"skipped")
    if unknown_fields:
        run.warnings.append(f"{metrics_path}: unknown field(s) ignored: "
                            f"{', '.join(sorted(unknown_fields))}")
    if unknown_events:
        run.warnings.append(f"{metrics_path}: unknown event kind(s) ignored: "
                            f"{', '.join(sorted(unknown_events))}")
    if over_peak:
        run.warnings.append(f"{metrics_path}: MFU unknown (null) at {len(over_peak)} log "
                            f"step(s): {over_peak[0]}")
    if run.records_read == 0:
        run.warnings.append(f"{metrics_path}: no records")
    return run


def read_runs(paths: list[str | Path]) -> list[Run]:
    """Read several runs. A directory without metrics.jsonl whose subdirectories have one
    stands for those subdirectories (`scaling report runs/`)."""
    runs: list[Run] = []
    for p in map(_path, paths):
        if p.is_dir() and not (p / METRICS_FILE).is_file():
            children = sorted(c for c in p.iterdir() if (c / METRICS_FILE).is_file())
            if children:
                runs.extend(read_run(c) for c in children)
                continue
        runs.append(read_run(p))
    # Same directory name twice (a/run1, b/run1): tell them apart by the parent.
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{_name(r.path.parent)}/{r.name}"
    return runs


def _int(x: float | None) -> int | float | None:
    return int(x) if x is not None and float(x).is_integer() else x


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(run: Run) -> dict:
    """One row of `scaling report` in raw units (None where the run does not say)."""
    last = run.train[-1] if run.train else {}
    step = number(last.get("step"))
    for record in (run.evals[-1] if run.evals else {}), (run.run_end or {}):
        s = number(record.get("step"))
        if s is not None and (step is None or s > step):
            step = s
    tokens_seen = number(last.get("tokens_seen"))
    if tokens_seen is None and step is not None:
        tokens_seen = run.tokens_at(step)

    _, eval_losses = run.series("eval_loss", run.evals)
    final_eval = run.evals[-1] if run.evals else {}
    _, device_peaks = run.series("device_peak_bytes")
    _, host_peaks = run.series("host_peak_rss_bytes")
    peak_memory, memory_kind = None, None
    if device_peaks:
        peak_memory, memory_kind = max(device_peaks), "device"
    elif host_peaks:
        peak_memory, memory_kind = max(host_peaks), "host"

    return {
        "run": run.name,
        "model": run.model,
        "params": run.params,
        "flops_per_token": run.flops_per_token,
        # Sweep members (config.json's sweep_member section): the budget they were given.
        "budget_flops": run.budget_flops,
        "budget_tokens": run.sweep_member("budget_tokens"),
        "step": int(step) if step is not None else None,
        "tokens_seen": _int(tokens_seen),
        "final_loss": number(last.get("loss")),
        "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_eval_loss": min(eval_losses) if eval_losses else None,
        "final_eval_bpb": number(final_eval.get("eval_bpb")),
        # Fine-tuning tasks (scaling.tasks.metrics): the last eval's scores, where logged.
        **{f"final_{k}": number(final_eval.get(k)) for k in TASK_SCORES},
        "median_tokens_per_s": _median(run.series("tokens_per_s")[1]),
        "median_mfu": _median(run.series("mfu")[1]),
        "peak_memory_bytes": _int(peak_memory),
        "memory_kind": memory_kind,
        "goodput": number(last.get("goodput")),
        "flops_convention": run.run_start.get("flops_convention"),
        "peak_source": run.run_start.get("peak_source"),
    }


def load_for_command(paths: list[str], prog: str) -> list[Run] | None:
    """Read runs for a command: print each warning once to stderr; None if nothing readable.

    Returns the readable runs, smallest model first; on None the caller exits 2 (the
    one-line reason is already printed).
    """
    import sys  # noqa: PLC0415
    try:
        runs = read_runs(paths)
    except Exception as e:    # the reader should not raise; never show a traceback anyway
        print(f"{prog}: could not read runs: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    for run in runs:
        for warning in run.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    readable = sorted((r for r in runs if has_data(r)), key=sort_key)
    if not readable:
        print(f"{prog}: no run could be read from {' '.join(map(str, paths))}", file=sys.stderr)
        return None
    return readable


def has_data(run: Run) -> bool:
    return run.records_read > 0


def sort_key(run: Run):
    """Smallest model first (a scaling sweep reads top to bottom); unknown sizes last."""
    return (run.params is None, run.params or 0, run.name)


# ---------------------------------------------------------------- human units

def human_count(x: float | None, digits: int = 1) -> str:
    """124_439_808 -> '124.4M'; None, NaN or inf -> '-'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}f}{unit}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.{digits}f}"


def human_flops(x: float | None) -> str:
    """1.2e9 -> '1.2 GFLOP'."""
    if x is None:
        return "-"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6),
                        ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f} {unit}FLOP"
    return f"{x:.0f} FLOP"


def human_bytes(x: float | None) -> str:
    """Binary units: 1.5 * 2**30 -> '1.5 GiB'."""
    if x is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= scale:
            return f"{x / scale:.1f} {unit}"
    return f"{x:.0f} B"
