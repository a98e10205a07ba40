"""Progress display for the training loop.

On a terminal: a tqdm bar (step, loss, tokens/s, ETA). Otherwise (logs redirected to a file,
SLURM, CI): one plain line per log step,

    step 40/200 | loss 2.314 | 31.2k tok/s | mfu 41.0% | eta 1m12s

Only process 0 shows anything by default.
"""
from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from scaling.runs import human_count


def human_duration(seconds: float | None) -> str:
    """75 -> '1m15s', 3725 -> '1h02m'."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _default_enabled() -> bool:
    import jax
    return jax.process_index() == 0


class Progress:
    """Show training progress.

    Args:
        total_steps: the step the run ends at.
        start_step: where this (possibly resumed) run starts.
        enabled: default `jax.process_index() == 0`.
        stream: where to write (default sys.stdout); a tqdm bar only if it is a terminal.
    """

    def __init__(self, total_steps: int, start_step: int = 0, enabled: bool | None = None,
                 stream: TextIO | None = None):
        self.total_steps = int(total_steps)
        self.start_step = int(start_step)
        self.enabled = _default_enabled() if enabled is None else bool(enabled)
        self.stream = stream if stream is not None else sys.stdout
        self._bar = None
        self._first: tuple[float, int] | None = None      # (time, step) of the first update
        self._last_step = self.start_step
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_steps, initial=self.start_step, file=self.stream,
                             unit="step", dynamic_ncols=True)

    def _eta(self, step: int, record: dict) -> float | None:
        now = time.monotonic()
        if self._first is None:
            self._first = (now, step)
        t0, s0 = self._first
        if step > s0 and now > t0:
            per_step = (now - t0) / (step - s0)
        else:   # first update: trust the record's own timing
            per_step = (record.get("step_time_s") or 0.0) + (record.get("data_wait_s") or 0.0)
            if per_step <= 0:
                return None
        return per_step * max(0, self.total_steps - step)

    def line(self, step: int, record: dict, eta_s: float | None) -> str:
        """The plain one-line summary of a train record."""
        parts = [f"step {step}/{self.total_steps}"]
        if record.get("loss") is not None:
            parts.append(f"loss {record['loss']:.3f}")
        elif "loss" in record:
            parts.append("loss nan")
        if record.get("tokens_per_s") is not None:
            parts.append(f"{human_count(record['tokens_per_s'])} tok/s")
        if record.get("mfu") is not None:
            parts.append(f"mfu {100 * record['mfu']:.1f}%")
        parts.append(f"eta {human_duration(eta_s)}")
        return " | ".join(parts)

    def update(self, step: int, record: dict | None = None) -> None:
        """Show that `step` is done; `record` is the train record of that step (if any)."""
        if not self.enabled:
            return
        record = record or {}
        eta_s = self._eta(step, record)
        if self._bar is not None:
            self._bar.update(max(0, step - self._last_step))
            postfix = {}
            if record.get("loss") is not None:
                postfix["loss"] = f"{record['loss']:.3f}"
            if record.get("tokens_per_s") is not None:
                postfix["tok/s"] = human_count(record["tokens_per_s"])
            if record.get("mfu") is not None:
                postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
            self._bar.set_postfix(postfix, refresh=True)
        else:
            print(self.line(step, record, eta_s), file=self.stream, flush=True)
        self._last_step = step

    def message(self, text: str) -> None:
        """Print a line without breaking the bar (eval results, checkpoint saved, ...)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
