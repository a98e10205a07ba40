"""`StopRequest`: SIGTERM/SIGINT become a flag the train loop checks after each step.

On multi-host jobs JAX's preemption sync point decides, so every host stops at one step and
saves the same checkpoint.
"""
from __future__ import annotations

import signal
import sys
import threading

import jax


class StopRequest:
    """SIGTERM/SIGINT -> a flag the train loop reads after each step (no device sync).

    Single process: handlers set the flag (a second SIGINT raises KeyboardInterrupt at
    once). Multi-process: JAX's preemption sync manager (started by
    jax.distributed.initialize) owns SIGTERM and `reached_preemption_sync_point(step)` is
    true at the same step on every host, so all hosts save that step.

    Use as a context manager around the loop; previous handlers are restored on exit.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}
        self._multihost = jax.process_count() > 1

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt     # a second Ctrl-C: stop now, abandoning a save
        self.signal_name = signal.Signals(signum).name
        if self._multihost:     # one host alone cannot stop the job at a common step
            print(f"\n{self.signal_name} received on one host of a multi-host job: ignored "
                  "(send SIGTERM to all hosts, or press Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)
            return
        print(f"\n{self.signal_name} received: finishing this step and saving a checkpoint",
              file=sys.stderr, flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            sigs = (signal.SIGINT,) if self._multihost else (signal.SIGTERM, signal.SIGINT)
            for s in sigs:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def reached(self, step: int) -> bool:
        """True when the run should save and stop after `step`."""
        if self._multihost:
            from jax.experimental import multihost_utils
            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    self.signal_name = self.signal_name or "preemption"
                    return True
            except RuntimeError:    # no preemption service in this job
                pass
            return False            # a local SIGINT alone would desynchronise the hosts
        return self.signal_name is not None
