"""Weights & Biases, optional: the scalars of metrics.jsonl and the resolved config.

`metrics.wandb=True` turns it on (`pip install -e ".[wandb]"`). MetricsWriter hands every
record it writes to the tracker, so W&B gets the same numbers as metrics.jsonl (the source
of truth) and TensorBoard; only process 0 writes. Without the package, or when W&B cannot
start, the run goes on after one warning line: metrics.jsonl holds everything, so a missing
tracker is no reason to lose a run. `WANDB_MODE=offline` keeps the W&B run in
`workdir/wandb/` for a later `wandb sync`. A resumed run continues the same W&B run: its id
is kept in `workdir/wandb_run_id`.
"""
from __future__ import annotations

import os
import sys
import uuid

from scaling import storage

RUN_ID_FILE = "wandb_run_id"


class WandbTracker:
    """A started `wandb` run behind the small interface MetricsWriter uses."""

    def __init__(self, run):
        self.run = run

    def log(self, step: int, scalars: dict) -> None:
        """The numeric fields of one train or eval record, at its step."""
        self.run.log(scalars, step=step)

    def event(self, kind: str, fields: dict) -> None:
        """A one-off event (run_start, compile, run_end) goes to the run summary."""
        self.run.summary.update({f"{kind}/{k}": v for k, v in fields.items()
                                 if v is None or isinstance(v, (str, int, float, bool))})

    def close(self) -> None:
        self.run.finish()


def _run_id(workdir: str) -> str:
    """This workdir's W&B run id: read back on a resume, else made and kept."""
    path = storage.join(workdir, RUN_ID_FILE)
    if storage.exists(path):
        run_id = storage.read_text(path).strip()
        if run_id:
            return run_id
    run_id = uuid.uuid4().hex[:12]
    storage.write_text_atomic(path, run_id + "\n")
    return run_id


def _local_dir(workdir: str) -> str:
    """Where W&B keeps its files: workdir/wandb, or for a bucket workdir ./wandb here (W&B
    writes only local files; `wandb sync` uploads an offline run from there)."""
    return "." if storage.is_url(workdir) else workdir


def open_wandb(metrics_config, resolved_config: dict, workdir: str) -> WandbTracker | None:
    """Start a W&B run for `workdir` if `metrics.wandb`; None if off or unavailable.

    Args:
        metrics_config: the config's `metrics` section (wandb, wandb_project,
            wandb_run_name: "" = the workdir's name, wandb_entity: "" = W&B's default).
        resolved_config: the run's resolved config (what config.json holds), logged as the
            W&B run config.
        workdir: the run directory; W&B's files go to workdir/wandb/.
    """
    m = metrics_config
    if not m.wandb:
        return None
    try:
        import wandb  # noqa: PLC0415
    except ImportError:
        print("warning: metrics.wandb=True but the wandb package is not installed (pip install "
              "-e \".[wandb]\"); training on without W&B (metrics.jsonl and TensorBoard still "
              "record everything)", file=sys.stderr, flush=True)
        return None
    workdir = os.fspath(workdir)
    name = m.wandb_run_name or os.path.basename(
        workdir.rstrip("/") if storage.is_url(workdir) else os.path.abspath(workdir))
    try:
        run = wandb.init(project=m.wandb_project or None, entity=m.wandb_entity or None,
                         name=name, dir=_local_dir(workdir), config=resolved_config,
                         id=_run_id(workdir), resume="allow",
                         settings=wandb.Settings(console="off"))
    except Exception as e:  # no login, no network: the run matters more than the tracker
        print(f"warning: metrics.wandb=True but W&B did not start ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''}); training on without W&B",
              file=sys.stderr, flush=True)
        return None
    return WandbTracker(run)
