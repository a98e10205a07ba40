"""`scaling sweep --config FILE:SWEEP --workdir DIR [--emit] [--config.a.b=v ...]`.

Trains every member of a sweep config (a family of model sizes, each on a token or FLOP
budget) one after another in WORKDIR/<member>, or with --emit prints one `scaling train`
command per member for a cluster's launcher and trains nothing. Rerunning the same command
skips finished members (metrics.jsonl has a run_end event) and resumes interrupted ones from
their latest checkpoint.

    scaling sweep --config experiments/sweep.py:tiny --workdir runs/sweep
    scaling sweep --config experiments/sweep.py:tiny --workdir runs/iso \\
        --config.sweep.budget=flops --config.sweep.flops=1e12
    scaling sweep --config experiments/sweep.py:tiny --workdir runs/sweep --emit
    scaling fit runs/sweep

Any `--config.a.b=v` override applies to every member (`--config.train.batch_size=32`,
`--config.sweep.sizes="1,32,2;2,64,4;3,96,6"`, `--config.sweep.tokens=1000000`, ...).
Exit codes: 0 done, 1 a member failed, 2 bad input (one line, before anything runs).
"""
from __future__ import annotations

import sys

from absl import flags

from scaling.config_loading import new_run_flags, parse_run


def _config_overrides(argv: list[str]) -> list[str]:
    """The `--config.a.b=v` arguments of argv, as `--config.a.b=v` (joins `--config.a.b v`)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" not in arg and i + 1 < len(argv):
                arg, i = f"{arg}={argv[i + 1]}", i + 1
            out.append(arg)
        i += 1
    return out


def config_arg(argv: list[str]) -> str | None:
    """The value of --config in argv (the experiment file and variant), or None."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str]) -> int:
    fv = new_run_flags(argv, "scaling sweep",
                       "sweep directory; member K trains in WORKDIR/<name>")
    flags.DEFINE_bool("emit", False, "print one `scaling train` command per member and exit",
                      flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv):
        print(__doc__)
        return 0

    def fail(message: str) -> int:
        print(f"scaling sweep: error: {message.splitlines()[0]}", file=sys.stderr)
        return 2

    try:
        parse_run(fv, argv, "scaling sweep", "experiments/sweep.py:tiny", "runs/sweep")
        from scaling import sweep  # noqa: PLC0415  (JAX only once the flags are good)
        from scaling import train  # noqa: PLC0415
        members = sweep.members(fv.config)
        for m in members:    # every member's config is checked before the first one trains
            train.validate(m.config)
    except ValueError as e:  # ConfigError is a ValueError
        return fail(str(e))

    if fv.emit:
        for line in sweep.launch_commands(config_arg(argv), fv.workdir, members,
                                          _config_overrides(argv)):
            print(line)
        return 0

    from scaling.checkpoint import CheckpointError  # noqa: PLC0415
    from scaling.workdir_lock import WorkdirBusy  # noqa: PLC0415
    try:
        summary = sweep.run_sweep(members, fv.workdir)
    except (CheckpointError, WorkdirBusy) as e:
        return fail(str(e))
    except FloatingPointError as e:  # train.nonfinite=stop in a member
        print(f"scaling sweep: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"sweep {fv.workdir}: {len(summary['ran'])} run(s) trained, "
          f"{len(summary['skipped'])} already finished, {summary['wall_s']:.0f}s; "
          f"fit with: scaling fit {fv.workdir}", flush=True)
    return 0
