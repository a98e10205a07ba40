"""`scaling train --config experiments/gpt2.py:tiny --workdir runs/demo [--config.a.b=v ...]`.

Any config field can be overridden in the ml_collections way, e.g.
    --config.train.steps=200 --config.optim.lr=1e-3
Bad input (config, data, mesh, an incompatible checkpoint, an unwritable workdir) exits with
code 2 and a one-line message before anything is written. A workdir with checkpoints resumes
from the latest one. SIGTERM/SIGINT finish the step, save a checkpoint and exit 0; a second
Ctrl-C abandons that save and exits 130; a run stopped by non-finite steps exits 1; a
checkpoint that cannot be written (disk full) stops the run with exit code 3.
"""
from __future__ import annotations

import shlex
import sys


from scaling.config_loading import new_run_flags, parse_run


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the loop, or a second one during it or a save
        print("scaling train: interrupted: a checkpoint save in progress is abandoned; "
              "committed checkpoints are kept and a rerun resumes from the latest",
              file=sys.stderr, flush=True)
        return 130


def _main(argv: list[str]) -> int:
    fv = new_run_flags(argv, "scaling train", "run directory (config, metrics, checkpoints)")
    if any(a in ("-h", "--help", "-help") for a in argv):
        print(__doc__)
        print(fv.main_module_help() if hasattr(fv, "main_module_help") else "")
        return 0
    try:
        parse_run(fv, argv, "scaling train", "experiments/gpt2.py:tiny", "runs/demo")
        from scaling import train  # heavy imports only once the flags are good
        train.validate(fv.config)
    except ValueError as e:  # ConfigError is a ValueError
        print(f"scaling train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    from scaling import distributed
    from scaling.checkpoint import CheckpointError, CheckpointWriteError
    from scaling.config_loading import ConfigError
    from scaling.workdir_lock import WorkdirBusy
    try:
        summary = train.run(fv.config, fv.workdir)
    except (ConfigError, CheckpointError, distributed.DistributedError, WorkdirBusy) as e:
        # Checked before anything is written or compiled: bad input, no coordinator, or
        # another run holding the workdir.
        print(f"scaling train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except CheckpointWriteError as e:  # disk full or unwritable: the older checkpoint stays
        print(f"scaling train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 3
    except FloatingPointError as e:  # train.nonfinite=stop
        print(f"scaling train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    if summary.get("stopped_at") is not None:
        print(f"stopped at step {summary['stopped_at']}; resume with: scaling train "
              + " ".join(shlex.quote(a) for a in argv), flush=True)
    return 0
