"""`scaling probe-peak [--repeats N] [--no-save] [--json]`: measure this CPU's matmul peak.

On CPU, MFU divides by a measured peak (scaling.hardware): a jitted fp32 matmul timed
`--repeats` times; the best reading is the peak, the spread (best - min) / best and the
system load before the probe say how far to trust it. The result replaces this host's entry
in the cache that `scaling train` reads (unless --no-save), so run it on a quiet machine when
a run reported MFU > 1 or the cached figure looks low. GPU and TPU runs use the datasheet
table instead and never read this cache.

Exit status: 0, or 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json


def build_parser() -> argparse.ArgumentParser:
    from scaling.config import base_config  # noqa: PLC0415
    parser = argparse.ArgumentParser(prog="scaling probe-peak",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=base_config().metrics.cpu_peak_repeats,
                        help="readings (default metrics.cpu_peak_repeats)")
    parser.add_argument("--size", type=int, default=2048,
                        help="matrix size n of the (n, n) @ (n, n) matmul (default 2048)")
    parser.add_argument("--no-save", action="store_true", help="measure only; keep the cache")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def format_probe(probe: dict, saved_to) -> str:
    """The human-readable report of a `probe_cpu_peak()` result."""
    from scaling.hardware import BUSY_LOAD  # noqa: PLC0415
    g = lambda x: f"{x / 1e9:.1f} GFLOP/s"  # noqa: E731
    m, load = probe["machine"], probe["load"]
    lines = [f"CPU fp32 matmul peak ({probe['matrix']}x{probe['matrix']}, "
             f"{probe['repeats']} readings)",
             f"  best    {g(probe['flops_per_s'])}  (the peak MFU divides by)",
             f"  median  {g(probe['median'])}",
             f"  min     {g(probe['min'])}",
             f"  spread  {100 * probe['spread']:.1f}%  ((best - min) / best)",
             "  load    " + ("unknown" if load is None else
                             f"{load:.2f} per core (1-minute load average before the probe)"),
             f"  machine {m['hostname']} | {m['cpu']} | {m['cores']} cores | jax {m['jax']}",
             f"  date    {probe['measured_at']}"]
    if load is not None and load > BUSY_LOAD:
        lines.append(f"warning: the machine was busy (load above {BUSY_LOAD} per core); the "
                     "peak may read low. Measure again when it is quiet.")
    lines.append(f"saved to {saved_to}" if saved_to else "not saved (--no-save)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: must be >= 1, got {args.repeats}")
    if args.size < 1:
        parser.error(f"--size: must be >= 1, got {args.size}")
    from scaling import hardware  # noqa: PLC0415
    probe = hardware.probe_cpu_peak(args.repeats, n=args.size)
    saved_to = None if args.no_save else hardware.save_cpu_peak(probe)
    if args.json:
        print(json.dumps({**probe, "cache_file": str(saved_to) if saved_to else None},
                         indent=1))
    else:
        print(format_probe(probe, saved_to))
    return 0
