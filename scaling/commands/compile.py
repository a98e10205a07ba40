"""`scaling compile --config FILE:VARIANT --mesh data=8,tensor=8 [--device h100] [--json]`.

Lowers and compiles the real train step (the one `scaling train` runs: same model, AdamW,
shardings and donation) for a mesh of that many fake CPU devices, from abstract shapes only:
no parameter or optimizer memory is allocated. Prints per device what XLA's memory analysis
reports (arguments, outputs, temporaries, and the peak they add up to), the FLOPs XLA counts
for one step beside the analytic estimate, whether the peak fits the named accelerator, and
the step's collectives from its HLO (scaling.collectives: kind, mesh axes, bytes per device,
runs per step; JSON key "collectives").

    scaling compile --config experiments/gpt2.py:xl --device h100
    scaling compile --config experiments/megatron.py:8b3 --mesh data=8,tensor=8 --device h100 \\
        --config.train.batch_size=512 --config.data.seq_len=1024

A size-table variant compiles its published recipe (experiments/size_table.py): the global
batch and length, on its mesh over parallel.recipe_devices fake devices; on another --mesh
the recipe's per-device micro-batch is kept by changing train.micro_batches. Any
`--config.a.b=v` override applies (batch, seq_len, dtype, remat, micro_batches, ...). The
config is validated first, without the data checks (tokenizer files need not be here).
Layers are scanned (model.scan_layers=True) so compile time stays flat in depth, unless the
command line sets model.scan_layers itself. Numbers are for the XLA CPU compiler: an
accelerator's compiler fuses and schedules differently, so treat the memory as an estimate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys

from scaling.mesh import MESH_AXES, mesh_shape, parse_mesh, recipe_micro_batches

_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")
_REEXEC_ENV = "SCALING_COMPILE_CHILD"


def _default_mesh(config) -> dict[str, int]:
    """The config's parallel.mesh: over parallel.recipe_devices when a recipe sets it, else
    with a -1 axis read as 1."""
    devices = int(config.parallel.get("recipe_devices", 0))
    if devices > 0:
        return mesh_shape(config.parallel.mesh, devices)
    sizes = {a: int(config.parallel.mesh.get(a, 1)) for a in MESH_AXES}
    return mesh_shape({a: max(s, 1) for a, s in sizes.items()}, math.prod(
        max(s, 1) for s in sizes.values()))


def _ensure_devices(n: int, argv: list[str]) -> int | None:
    """Make jax.devices() offer at least n CPU devices; returns an exit code if re-executed.

    XLA reads the fake device count once, when the CPU backend starts: set it before that.
    If this process already started a backend with too few devices (a caller imported and
    used jax first), run the command again in a fresh interpreter.
    """
    if "jax" in sys.modules:
        from jax._src import xla_bridge  # noqa: PLC0415
        if xla_bridge.backends_are_initialized():
            import jax  # noqa: PLC0415
            if jax.default_backend() == "cpu" and len(jax.devices()) >= n:
                return None
            if os.environ.get(_REEXEC_ENV):
                raise RuntimeError(f"--mesh: needs {n} devices; the backend has "
                                   f"{len(jax.devices())}")
            env = dict(os.environ, **{_REEXEC_ENV: "1"})
            env["XLA_FLAGS"] = _with_count(env.get("XLA_FLAGS", ""), n)
            env["JAX_PLATFORMS"] = "cpu"
            return subprocess.call([sys.executable, "-m", "scaling.cli", "compile", *argv],
                                   env=env)
    flags = os.environ.get("XLA_FLAGS", "")
    counts = [int(c.rsplit("=", 1)[1]) for c in _COUNT_FLAG.findall(flags)]
    if not counts or counts[-1] < n:  # keep a larger count someone set (the tests' 8)
        os.environ["XLA_FLAGS"] = _with_count(flags, n)
    os.environ["JAX_PLATFORMS"] = "cpu"
    return None


def _with_count(flags: str, n: int) -> str:
    flags = _COUNT_FLAG.sub("", flags).strip()
    return f"{flags} --xla_force_host_platform_device_count={n}".strip()


def _lower_and_compile(config, mesh_sizes: dict[str, int]):
    """(CompiledStep, StateLayout, spec) of config's train step, from abstract shapes."""
    import jax  # noqa: PLC0415

    from scaling import sharding  # noqa: PLC0415
    from scaling import train as train_lib  # noqa: PLC0415
    from scaling.batch_spec import batch_spec  # noqa: PLC0415
    from scaling.compile_step import compile_step  # noqa: PLC0415
    from scaling.models import build_model, example_batch  # noqa: PLC0415
    from scaling.optim import make_optimizer, make_schedule  # noqa: PLC0415

    # The data need not be here to size a step (tokenizer files, datasets): skip those checks.
    spec = train_lib.validate(config, data_checks=False)
    n = math.prod(mesh_sizes.values())
    mesh = sharding.make_mesh(mesh_sizes, devices=jax.devices()[:n])
    rules = sharding.logical_rules(config.parallel.rules)
    batch_size, micro = config.train.batch_size, config.train.micro_batches
    sharding.check_divisibility(spec, mesh, batch_size, micro)  # one-line errors, no compile

    seq_len, target_len = config.data.seq_len, config.data.target_len
    model = build_model(spec)
    tx = make_optimizer(config.optim, config.train.steps)
    schedule = make_schedule(config.optim, config.train.steps)
    # One row of zeros (not ShapeDtypeStructs): init closes over it, and the encoder's
    # padding mask calls array methods on it.
    init_batch = example_batch(spec, 1, seq_len, target_len or None)
    rng = jax.ShapeDtypeStruct((2,), jax.numpy.uint32)  # a PRNGKey's shape: nothing allocated
    layout = sharding.train_state_layout(model, tx, init_batch, rng, mesh, rules)
    batch_sh = sharding.batch_sharding(mesh)
    batch = {k: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sh) for k, (shape, dtype)
             in batch_spec(config.data.objective, batch_size, seq_len, target_len).items()}
    # The state is donated as `scaling train` does on the accelerators this sizes a job for.
    step = compile_step(model, tx, schedule, config.train, layout, mesh, rules, batch,
                        donate=True)
    return step, layout, spec


def _xla_flops(compiled) -> float:
    cost = compiled.cost_analysis() or {}
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def compile_report(config, mesh_sizes: dict[str, int], device: str | None = None) -> dict:
    """Lower and compile config's train step on a mesh of fake CPU devices; no parameters.

    Returns a dict of the mesh, shapes, per-device memory (bytes), FLOPs and the fit verdict.

    Memory comes from the compile of the real (scanned) step. FLOPs of a scanned step, or
    of one with micro-batches, are not counted per loop trip by XLA's cost analysis, so they
    come from two more, small compiles of the model unrolled to 1 and 2 layers on one
    micro-batch (see below).
    """
    import jax  # noqa: PLC0415

    from scaling import collectives  # noqa: PLC0415
    from scaling.hardware import DEVICES  # noqa: PLC0415
    from scaling.sizes import count_params  # noqa: PLC0415

    target = None
    if device:
        if device.lower() not in DEVICES:
            raise ValueError(f"--device: unknown {device!r}; known: {', '.join(DEVICES)}")
        target = DEVICES[device.lower()]
    step, layout, spec = _lower_and_compile(config, mesh_sizes)
    compiled, lower_s, compile_s = step.fn, step.lower_s, step.compile_s
    n = math.prod(mesh_sizes.values())
    batch_size, seq_len, target_len = (config.train.batch_size, config.data.seq_len,
                                       config.data.target_len)

    mem = compiled.memory_analysis()
    arguments = int(mem.argument_size_in_bytes)
    outputs = int(mem.output_size_in_bytes)
    aliased = int(mem.alias_size_in_bytes)
    temporaries = int(mem.temp_size_in_bytes)
    # Donated state buffers are reused for the outputs (aliased), so they count once.
    peak = arguments + outputs - aliased + temporaries

    xla_flops, flops_method = _xla_flops(compiled), "one compile, layers unrolled"
    layers = max(spec.num_layers, spec.decoder_layers if spec.family == "encoder_decoder"
                 else 0)
    micro = config.train.micro_batches
    if (spec.scan_layers and layers > 1) or micro > 1:
        # XLA's cost analysis counts a loop's body once, not once per trip: neither the
        # scanned layers nor the micro-batch loop. So count unrolled 1- and 2-layer copies
        # of the model on one micro-batch: per layer = F2 - F1, total = micro_batches x
        # (F1 + (L - 1) x per layer) (exact for identical layers; enc-dec: both stacks).
        flops = []
        for depth in (1, 2):
            variant = config.copy_and_resolve_references()
            variant.model.scan_layers = False
            variant.model.num_layers = depth
            variant.train.update(batch_size=batch_size // micro, micro_batches=1)
            if spec.family == "encoder_decoder":
                variant.model.num_decoder_layers = depth
            flops.append(_xla_flops(_lower_and_compile(variant, mesh_sizes)[0].fn))
        xla_flops = micro * (flops[0] + (layers - 1) * (flops[1] - flops[0]))
        flops_method = ("micro_batches x (F1 + (layers - 1) x (F2 - F1)) from unrolled 1- "
                        "and 2-layer compiles of one micro-batch")
    # Read the HLO of the real (scanned) step: its loops' trip counts multiply their bodies.
    comm = collectives.report(compiled.as_text(), mesh_sizes)
    tokens = spec.tokens_per_sequence(seq_len, target_len)
    analytic = spec.train_flops_per_sequence(seq_len, target_len) * batch_size / n
    counts = count_params(spec)
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(layout.abstract))
    report = {
        "model": spec.name, "config": config.get("experiment", ""),
        "params": counts.backbone, "mesh": mesh_sizes, "devices": n,
        "batch_size": batch_size, "seq_len": seq_len, "tokens_per_step": batch_size * tokens,
        "micro_batches": config.train.micro_batches, "dtype": spec.dtype, "remat": spec.remat,
        "scan_layers": spec.scan_layers,
        "train_state_bytes_total": int(state_bytes),
        "memory_per_device": {"arguments": arguments, "outputs": outputs, "aliased": aliased,
                              "temporaries": temporaries, "peak": peak,
                              "generated_code": int(mem.generated_code_size_in_bytes)},
        "flops_per_device": {"xla": xla_flops, "analytic": analytic,
                             "xla_over_analytic": xla_flops / analytic if analytic else None,
                             "xla_method": flops_method},
        "flops_convention": "analytic = spec.train_flops_per_sequence (PaLM: 6N + 12*L*T*d "
                            "per token) x batch / devices",
        "collectives": comm,
        "sharding_fallbacks": layout.fallbacks,
        "lower_s": round(lower_s, 2), "compile_s": round(compile_s, 2),
    }
    if target is not None:
        report["device"] = {"name": target.name, "hbm_bytes": target.hbm_bytes,
                            "fits": peak <= target.hbm_bytes,
                            "fraction_used": peak / target.hbm_bytes}
    return report


def _gb(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _collective_lines(comm: dict | None, rows: int = 8) -> list[str]:
    """The collectives table merged by (kind, axes), largest first, and per-axis totals."""
    if not comm or not comm["table"]:
        return ["  collectives per step: none"]
    merged: dict[tuple, list] = {}
    for row in comm["table"]:
        m = merged.setdefault((row["kind"], row["axes"]), [0, 0.0, 0.0])
        m[0] += row["count"]
        m[1] += row["count"] * row["size_bytes"]
        m[2] += row["total_bytes"]
    lines = ["  collectives per step, bytes each device sends (ring: all-reduce 2(n-1)/n S, "
             "gather/scatter (n-1)/n S):",
             f"    {'kind':<19}{'axes':<18}{'mean S':>11}{'runs':>7}{'sent':>12}"]
    ordered = sorted(merged.items(), key=lambda kv: -kv[1][2])
    for (kind, axes), (count, size, sent) in ordered[:rows]:
        lines.append(f"    {kind:<19}{axes:<18}{_gb(size / count):>11}{count:>7}{_gb(sent):>12}")
    if len(ordered) > rows:
        rest = sum(v[2] for _, v in ordered[rows:])
        lines.append(f"    ({len(ordered) - rows} more kinds/axes: {_gb(rest)})")
    per_axis = ", ".join(f"{a} {_gb(b)}" for a, b in sorted(
        comm["totals"]["by_axes"].items(), key=lambda kv: -kv[1]))
    lines.append(f"    per axes: {per_axis}; total {_gb(comm['totals']['total'])}")
    for loop in comm.get("loops_counted_once", []):
        lines.append(f"    note: while loop {loop} has no known trip count: counted once")
    return lines


def format_report(r: dict) -> str:
    m, f = r["memory_per_device"], r["flops_per_device"]
    mesh = " x ".join(f"{a}={s}" for a, s in r["mesh"].items() if s > 1) or "1 device"
    lines = [
        f"{r['model']} ({r['params']:,} params) on {r['devices']} device(s): {mesh}",
        f"  batch {r['batch_size']} x {r['seq_len']} tokens, micro_batches {r['micro_batches']},"
        f" dtype {r['dtype']}, remat {r['remat']}, scan_layers {r['scan_layers']}",
        f"  lowered in {r['lower_s']:.1f}s, compiled in {r['compile_s']:.1f}s",
        "  memory per device (XLA memory analysis):",
        f"    arguments    {_gb(m['arguments']):>12}   (train state shard + batch shard)",
        f"    outputs      {_gb(m['outputs']):>12}   ({_gb(m['aliased'])} aliased to donated "
        "arguments)",
        f"    temporaries  {_gb(m['temporaries']):>12}   (activations, gradients, workspace)",
        f"    peak         {_gb(m['peak']):>12}   (arguments + outputs - aliased + temporaries)",
        "  FLOPs per device per step:",
        f"    XLA cost analysis   {f['xla']:.4g}",
        f"    analytic (PaLM)     {f['analytic']:.4g}"
        + (f"   (XLA / analytic = {f['xla_over_analytic']:.2f})"
           if f["xla_over_analytic"] else ""),
    ]
    lines += _collective_lines(r.get("collectives"))
    for path, notes in r["sharding_fallbacks"].items():
        lines.append(f"  sharding fallback: {path}: {'; '.join(notes)}")
    if "device" in r:
        d = r["device"]
        verdict = "fits" if d["fits"] else "does NOT fit"
        lines.append(f"  {verdict} on {d['name']} ({_gb(d['hbm_bytes'])} HBM): "
                     f"{100 * d['fraction_used']:.0f}% used at peak")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scaling compile", description=__doc__.splitlines()[0],
        epilog="Remaining --config... arguments are config overrides.")
    parser.add_argument("--mesh", default=None,
                        help="target mesh, e.g. data=8,tensor=8 (axes: data, fsdp, tensor; "
                             "default: the config's parallel.mesh over its "
                             "parallel.recipe_devices, else with -1 read as 1)")
    parser.add_argument("--device", default=None,
                        help="accelerator to check the fit against: h100, h200, a100-40, "
                             "a100-80, tpu-v4, tpu-v5e, tpu-v5p, tpu-v6e")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args, rest = parser.parse_known_args(argv)

    def fail(message: str) -> int:
        print(f"scaling compile: error: {message.splitlines()[0]}", file=sys.stderr)
        return 2

    from scaling.config_loading import ConfigError, new_flags, parse  # noqa: PLC0415
    fv = new_flags(rest, prog="scaling compile")
    notes = []
    try:
        parse(fv, rest, prog="scaling compile")
        config = fv.config
        if config is None:
            raise ConfigError("--config: required, e.g. --config experiments/gpt2.py:xl")
        mesh_sizes = parse_mesh(args.mesh) if args.mesh is not None else _default_mesh(config)
        given = {a.split("=")[0] for a in rest}
        if not given & {"--config.train.batch_size", "--config.train.micro_batches"}:
            micro = recipe_micro_batches(config.parallel, config.train, mesh_sizes)
            if micro != config.train.micro_batches:
                notes.append(f"train.micro_batches={micro} (the recipe's per-device "
                             f"micro-batch on this mesh; it sets "
                             f"{config.train.micro_batches} for "
                             f"{config.parallel.recipe_devices} devices)")
                config.train.micro_batches = micro
    except ValueError as e:
        return fail(str(e))
    rc = _ensure_devices(math.prod(mesh_sizes.values()), argv)
    if rc is not None:
        return rc

    try:
        if not any(a.startswith("--config.model.scan_layers") for a in rest):
            config.model.scan_layers = True
            notes.append("model.scan_layers=True (compile time flat in depth; "
                         "--config.model.scan_layers=False to unroll)")
        if (args.device and not args.device.lower().startswith("cpu")
                and config.model.kernels == "auto"):
            # auto would pick the CPU kernels (custom VJPs that save other tensors); an
            # accelerator runs the reference math (the gpu set adds cuDNN attention).
            config.model.kernels = "reference"
            notes.append(f"model.kernels=reference (the math {args.device} runs; the CPU "
                         "kernels keep other tensors for the backward pass)")
        config.parallel.engine = "jit"
        config.parallel.mesh.update(mesh_sizes)
        report = compile_report(config, mesh_sizes, args.device)
    except (ValueError, RuntimeError) as e:
        return fail(str(e))
    report["notes"] = notes
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for note in notes:
            print(f"note: {note}")
        print(format_report(report))
    return 0
