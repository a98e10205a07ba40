"""`scaling plan --config FILE:VARIANT --devices 8 --device h100 [--mfu 0.45] [--mesh ...] [--aot]`
and `scaling plan --table [--devices 8 --device h100 --mfu 0.45] [--all]`
and `scaling plan --table --published [--h100s N] [--mfu 0.4] [--price-per-device-hour 2.0]`
and `scaling plan --search --config FILE:VARIANT --device v100 --devices 512 [--top 5] [--aot]`.

Prints parameters, FLOPs/token, compute-optimal tokens (20 per parameter), training FLOPs,
wall-clock and device-hours at the given MFU, and memory per device (parameters, gradients,
AdamW moments, activations with and without full remat) for the config's parallel layout
(`--devices N` fills the config's -1 axis; `--mesh data=2,fsdp=4` sets it outright). A
size-table variant is planned at its published recipe (batch, length, micro-batches laid out
for parallel.recipe_devices devices; other counts keep its per-device micro-batch). With
--aot it also runs `scaling compile` for the same mesh and prints XLA's per-device peak
beside the estimate (slow for big models: a full lower + compile on fake CPU devices).
`--table` prints every row of the size table this way, with the published training set and
hardware beside it. `--table --published` prints each row's published run instead: hardware,
time (every source where they disagree), tokens, model FLOPs, the MFU that time implies, its
cost, and the same FLOPs on --h100s devices of --device (default: the published count) at
--mfu (default 0.4 here) and --price-per-device-hour. `--search` enumerates the layouts
of --devices devices (data x fsdp x tensor, micro-batches, remat) at the config's global
batch, keeps those that fit the device's HBM and ranks them by a roofline step time (compute
at --mfu, default 0.5 here, plus communication bytes over the link each mesh axis runs over;
--overlap ranks by max(compute, comm)); --aot compiles the top 3 on fake devices and prints
XLA's memory and the HLO's collectives per axis beside the estimate. Formulas and
conventions: scaling/plan.py, scaling/published.py, scaling/layout_search.py,
scaling/roofline.py.

    scaling plan --config experiments/gpt2.py:xl --devices 8 --device h100 --mfu 0.45
    scaling plan --config experiments/gpt2.py:xl --mesh fsdp=8 --device a100-80 \\
        --config.train.batch_size=64 --config.data.seq_len=1024
    scaling plan --table --devices 64 --device a100-80
    scaling plan --table --published --h100s 64 --mfu 0.4 --price-per-device-hour 2.5
    scaling plan --search --config experiments/megatron.py:8b3 --device v100 --devices 512

Exit codes: 0, or 2 with one line for bad input.
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scaling plan", description=__doc__.splitlines()[0],
        epilog="Remaining --config... arguments are config overrides.")
    parser.add_argument("--devices", type=int, default=None,
                        help="number of devices (default: the --mesh product, else 8 for "
                             "--table, else the recipe's parallel.recipe_devices, else 1)")
    parser.add_argument("--device", default="h100", help="accelerator, e.g. h100, a100-80, "
                                                         "tpu-v5p (scaling/hardware.py)")
    parser.add_argument("--mfu", type=float, default=None,
                        help="model FLOPs utilization (default 0.45; --published 0.4)")
    parser.add_argument("--mesh", default=None, help="layout, e.g. data=2,fsdp=4,tensor=1")
    parser.add_argument("--table", action="store_true", help="every size-table row")
    parser.add_argument("--all", action="store_true", help="--table: the smaller family "
                                                           "members too")
    parser.add_argument("--published", action="store_true",
                        help="--table: each row's published run, implied MFU and cost")
    parser.add_argument("--h100s", type=int, default=None,
                        help="--published: devices for our estimate (default: the "
                             "published count)")
    parser.add_argument("--price-per-device-hour", type=float, default=None,
                        help="--published: $ per --device hour (default: "
                             "scaling/hardware.py CLOUD_PRICES)")
    parser.add_argument("--search", action="store_true",
                        help="rank every layout of --devices devices by estimated step time")
    parser.add_argument("--top", type=int, default=None,
                        help="--search: how many layouts to print (default 5)")
    parser.add_argument("--overlap", action="store_true",
                        help="--search: rank by max(compute, comm) instead of their sum")
    parser.add_argument("--aot", action="store_true",
                        help="also run `scaling compile` for XLA's memory figure (--search: "
                             "for the top 3, with the HLO's collectives)")
    parser.add_argument("--json", action="store_true", help="print raw numbers as JSON")
    args, rest = parser.parse_known_args(argv)

    def fail(message: str) -> int:
        print(f"scaling plan: error: {message.splitlines()[0]}", file=sys.stderr)
        return 2

    if args.devices is not None and args.devices < 1:
        return fail(f"--devices: must be positive, got {args.devices}")
    if not args.published and (args.h100s is not None
                               or args.price_per_device_hour is not None):
        return fail("--h100s and --price-per-device-hour: only with --table --published")
    if not args.search and (args.top is not None or args.overlap):
        return fail("--top and --overlap: only with --search")
    if args.search:
        return _search(args, rest, fail)
    if args.published:
        if not args.table:
            return fail("--published: only with --table, e.g. scaling plan --table --published")
        if rest:
            return fail(f"--table takes no config: unexpected {rest[0]!r}")
        from experiments.size_table import PUBLISHED_RUNS, ROWS  # noqa: PLC0415
        from scaling import published  # noqa: PLC0415
        try:
            rows = published.published_rows(
                PUBLISHED_RUNS, ROWS, args.device, args.h100s,
                0.4 if args.mfu is None else args.mfu, args.price_per_device_hour)
        except ValueError as e:
            return fail(str(e))
        print(json.dumps(rows, indent=1) if args.json else published.format_published(rows))
        return 0
    args.mfu = 0.45 if args.mfu is None else args.mfu
    from scaling import plan as plan_lib  # noqa: PLC0415
    if args.table:
        if rest:
            return fail(f"--table takes no config: unexpected {rest[0]!r}")
        try:
            from experiments.size_table import ROWS  # noqa: PLC0415
            rows = plan_lib.table_rows(ROWS, args.devices or 8, args.device, args.mfu, args.all)
        except ValueError as e:
            return fail(str(e))
        print(json.dumps(rows, indent=1, default=str) if args.json
              else plan_lib.format_table(rows))
        return 0

    from scaling.config_loading import ConfigError, new_flags, parse  # noqa: PLC0415
    fv = new_flags(rest, prog="scaling plan")
    try:
        parse(fv, rest, prog="scaling plan")
        if fv.config is None:
            raise ConfigError("--config: required (or --table), e.g. --config "
                              "experiments/gpt2.py:xl")
        result = plan_lib.plan(fv.config, args.devices, args.device, args.mfu, args.mesh)
    except ValueError as e:
        return fail(str(e))
    aot = None
    if args.aot:
        from scaling.commands.sweep import config_arg  # noqa: PLC0415
        overrides = [a for a in rest if a.startswith("--config.")]
        aot = plan_lib.aot_memory(config_arg(rest), overrides, result["mesh"], args.device)
        result["aot"] = aot
    print(json.dumps(result, indent=1, default=str) if args.json
          else plan_lib.format_plan(result, aot))
    return 0


def _search(args, rest: list[str], fail) -> int:
    """`scaling plan --search`: flags checked first, then the search, then --aot."""
    if args.table or args.published:
        return fail("--search: not with --table/--published (it plans one config)")
    if args.mesh is not None:
        return fail("--search: tries every mesh; drop --mesh (or plan it without --search)")
    if args.devices is None:
        return fail("--search: needs --devices N, e.g. --devices 64")
    top = 5 if args.top is None else args.top
    if top < 1:
        return fail(f"--top: must be positive, got {top}")
    mfu = 0.5 if args.mfu is None else args.mfu
    from scaling import layout_search  # noqa: PLC0415
    from scaling import plan as plan_lib  # noqa: PLC0415
    from scaling.config_loading import ConfigError, new_flags, parse  # noqa: PLC0415
    fv = new_flags(rest, prog="scaling plan")
    try:
        parse(fv, rest, prog="scaling plan")
        if fv.config is None:
            raise ConfigError("--config: required with --search, e.g. --config "
                              "experiments/gpt2.py:xl")
        result = layout_search.search(fv.config, args.devices, args.device, mfu, args.overlap)
    except ValueError as e:
        return fail(str(e))
    aot = None
    if args.aot:
        from scaling.commands.sweep import config_arg  # noqa: PLC0415
        overrides = [a for a in rest if a.startswith("--config.")]
        aot = [plan_lib.aot_memory(
            config_arg(rest), overrides + [f"--config.train.micro_batches="
                                           f"{c.layout.micro_batches}",
                                           f"--config.model.remat={c.layout.remat}"],
            c.layout.mesh, args.device) for c in result["ranked"][:3]]
    if args.json:
        out = {k: v for k, v in result.items()
               if k not in ("ranked", "config_candidate", "config_layout")}
        out["top"] = [c.to_dict() for c in result["ranked"][:top]]
        own = result["config_candidate"]
        out["config_layout"] = None if own is None else own.to_dict()
        if aot is not None:
            out["aot"] = aot
        print(json.dumps(out, indent=1, default=str))
    else:
        print(layout_search.format_search(result, top, aot))
    return 0
