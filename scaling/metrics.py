"""Run metrics: a JSON-lines file (the source of truth), TensorBoard scalars, throughput and MFU.

`workdir/metrics.jsonl` holds one JSON object per line. `scaling report` and `scaling plot`
read it back (`scaling.runs`); TensorBoard (`workdir/tb/`) is a convenience view of the same
numbers. Every line carries `time` (unix seconds, added by the writer if absent).

Record schema
-------------
Train record, one per log step (written by the training loop, the throughput fields from
`Throughput.update`, the memory fields from `memory_stats`):

    step                     int    optimizer steps completed
    loss                     float  training loss of the last step (or mean over the interval)
    accuracy                 float  training token accuracy (where the objective has one)
    nonfinite_steps          int    steps in the interval whose update was skipped (NaN/inf)
    lr, grad_norm, param_norm float
    step_time_s              float  seconds per step, device work only (excludes data_wait_s)
    data_wait_s              float  seconds per step spent waiting for the input batch
    tokens_per_s             float  global tokens / (step_time_s + data_wait_s)
    tokens_per_s_per_device  float
    model_tflops_per_device  float  model FLOPs (flops_per_token x tokens) per second per device
    mfu                      float  model_tflops_per_device / peak; null when unknown or > 1
    mfu_warning              str    only when mfu > 1: why it is null, the peak's source (a
                                    CPU probe: its value, date and cache file) and the fix
    hfu                      float  XLA-counted FLOPs / peak; null without a compile cost or > 1
    hfu_warning              str    only when hfu > 1, as mfu_warning
    tokens_seen, flops_seen  int/float  cumulative, monotone (model FLOPs, global)
    goodput                  float  productive step time / wall time since the loop started
    badput_<what>_s          float  cumulative seconds marked unproductive (compile, checkpoint, eval)
    device_bytes_in_use, device_peak_bytes, device_bytes_limit   int  (backends that report them)
    host_peak_rss_bytes      int    process peak RSS, host memory (CPU backend)

Eval record: step, eval_loss, eval_ppl, eval_accuracy (where the objective has one), eval_bpb
(language models: the loss in bits per byte of predicted text, comparable across tokenizers).

One-off events, `{"event": kind, ...}`:
    run_start  model, family, params, non_embedding_params, flops_per_token,
               flops_per_token_kaplan, flops_convention, num_devices, peak_flops_per_device,
               peak_source, config_name, seq_len, batch_size
    compile    compile_time_s, hardware_flops_per_step (per device, XLA cost analysis)
    run_end    (anything final: step, wall_time_s, ...)

Values: numpy / JAX scalars become Python numbers; NaN and +-inf become JSON `null` (JSON has
no NaN; a null loss therefore means the step was non-finite).
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from scaling import storage
from scaling.profiling import parse_profile_steps

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def to_json_value(value: Any) -> Any:
    """A JSON-safe copy of `value`: scalars to int/float/bool, non-finite to None."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if hasattr(value, "shape") and hasattr(value, "dtype"):     # numpy / jax arrays
        array = np.asarray(value)
        if array.size == 1:
            return to_json_value(array.reshape(()).item())
        return to_json_value(array.tolist())
    return str(value)


def validate_config(m, total_steps: int | None = None) -> None:
    """The `metrics` section's cheap checks, as one-line ValueErrors naming the field.

    total_steps: train.steps, which a profile window must not start after."""
    if m.device_peak_tflops < 0:
        raise ValueError(f"metrics.device_peak_tflops: must be >= 0 (0 = look up or probe), "
                         f"got {m.device_peak_tflops}")
    if int(m.cpu_peak_repeats) != m.cpu_peak_repeats or m.cpu_peak_repeats < 1:
        raise ValueError(f"metrics.cpu_peak_repeats: must be an integer >= 1, got "
                         f"{m.cpu_peak_repeats}")
    if m.cpu_peak_max_age_days < 0:
        raise ValueError(f"metrics.cpu_peak_max_age_days: must be >= 0 (0 = measure at every "
                         f"run), got {m.cpu_peak_max_age_days}")
    parse_profile_steps(m.profile_steps, total_steps)


def flatten_config(config: dict, prefix: str = "") -> dict:
    """{"model": {"width": 64}} -> {"model.width": 64}; leaves that are not a str, bool, int
    or float become JSON text, None stays None."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, name + "."))
        elif value is None or isinstance(value, (str, bool, int, float)):
            flat[name] = value
        else:
            flat[name] = json.dumps(to_json_value(value))
    return flat


def _default_enabled() -> bool:
    import jax
    return jax.process_index() == 0


class MetricsWriter:
    """Append records to `workdir/metrics.jsonl` and (optionally) TensorBoard.

    Only process 0 writes by default; on other processes every method is a no-op. The file is
    appended to (`scaling.storage.LineAppender`), so a resumed run continues it. On a local
    disk each record is one `write()` of a complete line followed by a flush, so a killed run
    leaves only complete lines (except possibly the very last one, which `scaling.runs`
    tolerates); in a bucket the object is rewritten every few seconds and on `flush`.

    Args:
        workdir: the run directory, a local path or URL (created if missing).
        enabled: write anything at all; default `jax.process_index() == 0`.
        tensorboard: also write numeric fields as TensorBoard scalars under `workdir/tb`.
        tracker: also hand each record's numeric fields to this tracker
            (`scaling.tracking.WandbTracker`: log(step, scalars), event(kind, fields),
            close()); closed with the writer.
    """

    def __init__(self, workdir: str | os.PathLike, enabled: bool | None = None,
                 tensorboard: bool = True, tracker=None):
        self.enabled = _default_enabled() if enabled is None else bool(enabled)
        self.workdir = os.fspath(workdir)
        self.path = storage.join(self.workdir, METRICS_FILE)
        self._file = None
        self._tb = None
        self._tracker = tracker if self.enabled else None
        if not self.enabled:
            return
        self._file = storage.LineAppender(self.path)
        if tensorboard:
            self._tb = storage.tensorboard_writer(storage.join(self.workdir, TB_DIR))

    def write(self, record: dict) -> None:
        """Append one record (a dict of scalars); numeric fields also go to TensorBoard."""
        if not self.enabled or self._file is None:
            return
        clean = to_json_value(dict(record))
        clean.setdefault("time", time.time())
        line = json.dumps(clean, allow_nan=False, separators=(", ", ": ")) + "\n"
        # One call, one complete line; flushed at once on disk, uploaded every few seconds
        # to a bucket (LineAppender: an upload rewrites the whole object).
        self._file.write(line)
        if "event" in clean:
            if self._tracker is not None:
                self._tracker.event(clean["event"], {k: v for k, v in clean.items()
                                                     if k not in ("event", "time")})
            return
        if not isinstance(clean.get("step"), int):
            return
        step = clean["step"]
        scalars = {k: v for k, v in clean.items() if k not in ("step", "time")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, global_step=step, walltime=clean["time"])
        if self._tracker is not None:
            self._tracker.log(step, scalars)

    def write_hparams(self, config: dict) -> None:
        """The resolved config as TensorBoard hparams ("model.width" = 64, ...), in this run's
        event file, so the HPARAMS tab lists it next to the loss and throughput scalars."""
        if self._tb is None:
            return
        from tensorboardX.summary import hparams  # noqa: PLC0415
        metric_tags = {tag: 0.0 for tag in ("loss", "eval_loss", "tokens_per_s", "mfu")}
        for summary in hparams(flatten_config(config), metric_tags):
            self._tb.file_writer.add_summary(summary)

    def write_event(self, kind: str, **fields) -> None:
        """Append a one-off record `{"event": kind, **fields}` (run_start, compile, run_end)."""
        self.write({"event": kind, **fields})

    def flush(self) -> None:
        """Make everything written so far visible (uploads, on a bucket)."""
        if self._file is not None:
            self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Throughput:
    """Turn step timings into tokens/s, MFU, HFU, cumulative counters and goodput.

    Definitions (all per optimizer step):
      wall time of a step   = step_time_s + data_wait_s (an input-bound run shows a low MFU)
      tokens_per_s          = tokens_per_step / wall time of a step
      model_tflops_per_device = flops_per_token * tokens_per_s / num_devices / 1e12
      mfu                   = model FLOP/s per device / peak_flops_per_device
      hfu                   = hardware_flops_per_step / wall time / peak_flops_per_device,
                              where hardware_flops_per_step is XLA's cost analysis of the
                              compiled step, which for a partitioned program is per device
      goodput               = sum of step_time_s / wall time, where wall time is the larger
                              of the clock since this object was made and the time accounted
                              for (steps + data waits + `mark_unproductive` seconds), so a
                              compile marked right after construction still counts against it.
                              Data waits, compile, checkpoints and evals all lower goodput;
                              `mark_unproductive(seconds, what)` also records what the lost time
                              was spent on (`badput_<what>_s`).

    MFU (or HFU) above 1 is physically impossible, so it means the peak is wrong (too low:
    a wrong table entry, a CPU probe measured while the machine was busy) or the FLOP count is.
    Such a value is never reported as a number: the record has null and an `mfu_warning`
    (`hfu_warning`) naming the peak's source and the fix, and `on_over_peak` is called once
    per kind; `model_tflops_per_device` is still reported, so nothing is lost. A peak of 0
    (unknown device) also gives null, without a warning.

    Args:
        flops_per_token: model training FLOPs per token (forward + backward; say which
            convention in the run_start event).
        tokens_per_step: global tokens per optimizer step.
        num_devices: devices the step runs on.
        peak_flops_per_device: from `scaling.hardware.device_peak_flops`.
        hardware_flops_per_step: XLA-counted FLOPs of one step per device, or None.
        start_step: for a resumed run: the counters start at start_step steps' worth.
        clock: a `time.monotonic`-like function (tests pass a fake one).
        peak_source: where the peak comes from (`device_peak_flops`'s description).
        remedy: how to fix a peak that is too low, for the warning.
        on_over_peak: called once per kind as on_over_peak("MFU" or "HFU", warning);
            default `warnings.warn(warning)`.
    """

    def __init__(self, flops_per_token: float, tokens_per_step: int, num_devices: int,
                 peak_flops_per_device: float, hardware_flops_per_step: float | None = None,
                 start_step: int = 0, clock: Callable[[], float] = time.monotonic,
                 peak_source: str = "",
                 remedy: str = "Set --config.metrics.device_peak_tflops",
                 on_over_peak: Callable[[str, str], None] | None = None):
        self.flops_per_token = float(flops_per_token)
        self.tokens_per_step = int(tokens_per_step)
        self.num_devices = int(num_devices)
        self.peak_flops_per_device = float(peak_flops_per_device or 0.0)
        self.hardware_flops_per_step = hardware_flops_per_step
        self.tokens_seen = int(start_step) * self.tokens_per_step
        self.flops_seen = float(self.tokens_seen) * self.flops_per_token
        self.productive_s = 0.0
        self.data_wait_s = 0.0
        self.unproductive_s: dict[str, float] = {}
        self._clock = clock
        self._start = clock()
        self.peak_source = peak_source
        self.remedy = remedy
        self._on_over_peak = on_over_peak
        self._warned: set[str] = set()

    def mark_unproductive(self, seconds: float, what: str) -> None:
        """Note `seconds` of wall time spent on `what` (compile, checkpoint, eval)."""
        self.unproductive_s[what] = self.unproductive_s.get(what, 0.0) + float(seconds)

    def _utilization(self, flops_per_s_per_device: float, name: str,
                     record: dict) -> float | None:
        """flops / peak, or None (unknown peak, or over 1: then `<name>_warning` in record)."""
        if self.peak_flops_per_device <= 0:
            return None
        value = flops_per_s_per_device / self.peak_flops_per_device
        if value <= 1.0:
            return value
        source = f" from {self.peak_source}" if self.peak_source else ""
        warning = (f"{name} {value:.2f} > 1 is impossible, so the peak of "
                   f"{self.peak_flops_per_device / 1e12:.4g} TFLOP/s per device{source} is too "
                   f"low (or the FLOP count too high); {name.lower()} is logged as null. "
                   f"{self.remedy}")
        record[f"{name.lower()}_warning"] = warning
        if name not in self._warned:
            self._warned.add(name)
            if self._on_over_peak is not None:
                self._on_over_peak(name, warning)
            else:
                warnings.warn(warning, stacklevel=3)
        return None

    def update(self, step_time_s: float, data_wait_s: float = 0.0, num_steps: int = 1) -> dict:
        """Account for `num_steps` steps that each took `step_time_s` (+ `data_wait_s`).

        Returns:
            The throughput fields of a train record (see the module docstring).
        """
        num_steps = int(num_steps)
        step_wall = float(step_time_s) + float(data_wait_s)
        self.tokens_seen += num_steps * self.tokens_per_step
        self.flops_seen += num_steps * self.tokens_per_step * self.flops_per_token
        self.productive_s += num_steps * float(step_time_s)
        self.data_wait_s += num_steps * float(data_wait_s)

        tokens_per_s = self.tokens_per_step / step_wall if step_wall > 0 else float("nan")
        model_flops_per_device = tokens_per_s * self.flops_per_token / self.num_devices
        warnings_: dict[str, str] = {}
        hfu = None
        if self.hardware_flops_per_step and step_wall > 0:
            hfu = self._utilization(self.hardware_flops_per_step / step_wall, "HFU", warnings_)
        accounted = self.productive_s + self.data_wait_s + sum(self.unproductive_s.values())
        elapsed = max(self._clock() - self._start, accounted)
        record = {
            "step_time_s": float(step_time_s),
            "data_wait_s": float(data_wait_s),
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_per_device": tokens_per_s / self.num_devices,
            "model_tflops_per_device": model_flops_per_device / 1e12,
            "mfu": self._utilization(model_flops_per_device, "MFU", warnings_),
            "hfu": hfu,
            "tokens_seen": self.tokens_seen,
            "flops_seen": self.flops_seen,
            "goodput": min(1.0, self.productive_s / elapsed) if elapsed > 0 else None,
            **warnings_,
        }
        for what, seconds in self.unproductive_s.items():
            record[f"badput_{what}_s"] = seconds
        return record


def memory_stats(device=None) -> dict:
    """Memory in use and peak, where the backend reports it.

    Returns:
        GPU/TPU: device_bytes_in_use, device_peak_bytes, device_bytes_limit (those present).
        CPU (whose `memory_stats()` is None): host_peak_rss_bytes, the process's peak
        resident memory, which is host memory, not a device figure.
    """
    import jax
    device = device if device is not None else jax.local_devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:       # some backends raise instead of returning None
        stats = None
    out: dict[str, int] = {}
    if stats:
        for ours, theirs in (("device_bytes_in_use", "bytes_in_use"),
                             ("device_peak_bytes", "peak_bytes_in_use"),
                             ("device_bytes_limit", "bytes_limit")):
            if theirs in stats:
                out[ours] = int(stats[theirs])
    if not out:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["host_peak_rss_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
    return out


def cut_window(workdir: str, start_step: int, log_every: int) -> dict | None:
    """The train record that an interruption wrote mid-window, as sums to carry on.

    A run stopped at step 23 with log_every 10 wrote a record averaging steps 21-23; the
    resumed run's record at step 30 then averages 21-30 (carried sums + its own steps), the
    same window as an uninterrupted run's. Returns {"loss", "accuracy": sums over the
    window's finite steps, "n": their count}, or None when start_step ends a whole window.
    """
    if start_step % log_every == 0:
        return None
    record = None
    try:
        for line in storage.read_text(storage.join(workdir, METRICS_FILE)).splitlines():
            r = json.loads(line)
            if r.get("step") == start_step and "nonfinite_steps" in r:
                record = r  # readers keep the latest record of a step
    except (OSError, ValueError):
        return None
    if record is None or record.get("loss") is None:
        return None
    window = start_step - (start_step - 1) // log_every * log_every
    n = window - int(record["nonfinite_steps"])
    if n <= 0:
        return None
    return {"loss": record["loss"] * n, "accuracy": record.get("accuracy", 0.0) * n, "n": n}
