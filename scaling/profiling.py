"""A window of traced train steps (`metrics.profile_steps="5:8"`) for TensorBoard's profiler.

`jax.profiler` writes `workdir/tb/plugins/profile/<date>/<host>.xplane.pb`, the layout the
TensorBoard profile plugin reads (`tensorboard --logdir workdir/tb`, with the
tensorboard-plugin-profile / xprof package installed). A few steps after the first are
enough: step 1 includes one-time work, and a trace of many steps is large and slow to open.
"""
from __future__ import annotations

import os
import tempfile
import time

from scaling import storage


def parse_profile_steps(text: str, total_steps: int | None = None) -> tuple[int, int] | None:
    """"5:8" -> (5, 8), the first and last traced step (inclusive); "" -> None.

    Raises:
        ValueError: one line naming metrics.profile_steps, for a malformed window or one
            that starts after train.steps.
    """
    text = str(text).strip()
    if not text:
        return None
    first, sep, last = text.partition(":")
    try:
        window = (int(first), int(last)) if sep else (int(first), int(first))
    except ValueError:
        window = None
    if window is None or window[0] < 1 or window[1] < window[0]:
        raise ValueError(f"metrics.profile_steps: expected 'FIRST:LAST' step numbers with "
                         f"1 <= FIRST <= LAST (e.g. '5:8'), got {text!r}")
    if total_steps is not None and window[0] > total_steps:
        raise ValueError(f"metrics.profile_steps: the window {text!r} starts after the last "
                         f"step (train.steps={total_steps})")
    return window


class StepTracer:
    """Start a jax.profiler trace before the window's first step, stop it after its last.

    A resumed run that starts inside the window traces from its first step; a run that ends
    (or stops) inside the window stops the trace in `close()`.

    Args:
        window: (first, last) from parse_profile_steps, or None (does nothing).
        log_dir: the TensorBoard log dir (`workdir/tb`).
    """

    def __init__(self, window: tuple[int, int] | None, log_dir: str):
        self.window = window
        self.log_dir = os.fspath(log_dir)
        # jax.profiler writes local files: a bucket log dir gets the trace copied up on close.
        self._trace_dir = (tempfile.mkdtemp(prefix="scaling-trace-")
                           if window is not None and storage.is_url(self.log_dir)
                           else self.log_dir)
        self.active = False
        self.done = False

    def before_step(self, step: int) -> float:
        """Call before running `step`; returns the seconds spent starting a trace."""
        if self.window is None or self.active or self.done:
            return 0.0
        first, last = self.window
        if not first <= step <= last:
            return 0.0
        import jax  # noqa: PLC0415
        t = time.perf_counter()
        jax.profiler.start_trace(self._trace_dir)
        self.active = True
        return time.perf_counter() - t

    def after_step(self, step: int, outputs) -> float:
        """Call after dispatching `step` with its outputs; at the window's last step waits
        for them and stops the trace. Returns the seconds stopping took (the wait is step
        time)."""
        if not self.active or step < self.window[1]:
            return 0.0
        import jax  # noqa: PLC0415
        jax.block_until_ready(outputs)     # the traced steps' device work, not only dispatch
        t = time.perf_counter()
        self.close()
        return time.perf_counter() - t

    def close(self) -> None:
        """Stop a trace still running (the run ended inside the window)."""
        if self.active:
            import jax  # noqa: PLC0415
            jax.profiler.stop_trace()
            self.active, self.done = False, True
            if self._trace_dir != self.log_dir:
                storage.copy_tree(self._trace_dir, self.log_dir)
