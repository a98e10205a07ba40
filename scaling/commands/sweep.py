"""`scaling sweep --config FILE:SWEEP --workdir DIR [--emit|--status] [--strict] [--config.x=v]`.

Trains every member of a sweep config (a family of model sizes, each on a token or FLOP
budget) one after another in WORKDIR/<member>, or with --emit prints one `scaling train`
command per member for a cluster's launcher and trains nothing; --status lists the members
with their budget and state (done, partial, missing) and trains nothing. A member's
directory name carries its shape, budget and a fingerprint of its schedule, batch and data,
so rerunning with another budget trains new members and leaves the old ones alone; rerunning
the same command skips finished members and resumes interrupted ones from their latest
checkpoint. Members too short for their warmup (steps < 5 x optim.warmup_steps) or with
under 50 steps get one warning line each before anything trains; --strict refuses them.

    scaling sweep --config experiments/sweep.py:tiny --workdir runs/sweep
    scaling sweep --config experiments/sweep.py:tiny --workdir runs/iso \\
        --config.sweep.budget=flops --config.sweep.flops=1e12
    scaling sweep --config experiments/sweep.py:tiny --workdir runs/sweep --emit
    scaling sweep --config experiments/sweep.py:isoflop --workdir runs/isoflop --status
    scaling fit runs/sweep

Any `--config.a.b=v` override applies to every member (`--config.train.batch_size=32`,
`--config.sweep.sizes="1,32,2;2,64,4;3,96,6"`, `--config.sweep.tokens=1000000`, ...).
Exit codes: 0 done, 1 a member failed, 2 bad input or (--strict) a member too short (one line,
before anything runs).
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
    flags.DEFINE_bool("status", False, "list the members, their budget and state, and exit",
                      flag_values=fv)
    flags.DEFINE_bool("strict", False, "refuse members too short for their warmup or batch",
                      flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv):
        print(__doc__)
        return 0

    def fail(message: str) -> int:
        print(f"scaling sweep: error: {message.splitlines()[0]}", file=sys.stderr)
        return 2

    try:
        parse_run(fv, argv, "scaling sweep", "experiments/sweep.py:tiny", "runs/sweep")
        from scaling import storage, sweep  # noqa: PLC0415  (JAX only once the flags are good)
        from scaling import train  # noqa: PLC0415
        members = sweep.members(fv.config)
        for m in members:    # every member's config is checked before the first one trains
            train.validate(m.config)
            if not fv.status:   # a directory holding another run: refused, never reused
                sweep.check_identity(m, storage.join(fv.workdir, m.name))
    except ValueError as e:  # ConfigError is a ValueError
        return fail(str(e))

    if fv.status:
        print("\n".join(sweep.status_lines(members, fv.workdir)))
    short = [w for w in map(sweep.check_member, members) if w]
    if short and fv.strict:
        more = f" ({len(short) - 1} more member(s) too short)" if len(short) > 1 else ""
        return fail(f"{short[0]}{more}")
    for warning in short:
        print(f"warning: {warning}", file=sys.stderr)
    if fv.status:
        return 0
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
