"""Choose a parallel layout before the cluster exists: enumerate, size, time and rank.

For a config (its global batch kept), a device type and a device count, every layout:
  mesh        data x fsdp x tensor = devices, with tensor within one node and dividing the
              heads and the MLP hidden (sharding.check_divisibility), fsdp dividing the
              width (the `embed` dimension every weight is split along: otherwise
              sharding.fit_spec would leave weights whole and the memory model be wrong),
              and data x fsdp dividing the global batch;
  micro-batches  the divisors of the per-device batch;
  remat       none, dots (keep matmul outputs), full (keep each block's input).
Each gets
  memory      scaling.plan.memory_per_device (traced residuals; see below);
  comm bytes  scaling.comm_model's DP / FSDP / Megatron-TP collectives, per mesh axis;
  step time   scaling.roofline: FLOPs / (peak x MFU) beside bytes / link bandwidth.
Layouts that fit the device's HBM are ranked by step time (no overlap by default: Megatron's
tensor all-reduces sit on the critical path; `overlap=True` ranks by max(compute, comm)),
hence tokens/s.

FLOPs per device: the model's training FLOPs (spec.train_flops_per_sequence, PaLM 6N +
12LTd) x batch / devices, times 4/3 with full remat (each block's forward, a third of the
step, runs again); dots remat recomputes only elementwise work, counted as free.

Speed: the activation trace does not depend on the mesh, and a step's residuals are affine
in the rows per micro-batch (activations grow with rows; the bfloat16 weight copies do not),
so memory is traced once per remat at 1 and 2 rows and extrapolated to the layout's rows:
exact for the totals, approximate only for the one largest residual the recompute adds.
"""
from __future__ import annotations

import dataclasses

from scaling import roofline

REMATS = ("none", "dots", "full")
REMAT_FLOPS = {"none": 1.0, "dots": 1.0, "full": 4 / 3}


@dataclasses.dataclass(frozen=True)
class Layout:
    """One way to run the step: mesh sizes, micro-batches per step, remat policy."""
    data: int
    fsdp: int
    tensor: int
    micro_batches: int
    remat: str

    @property
    def mesh(self) -> dict[str, int]:
        return {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}

    @property
    def mesh_text(self) -> str:
        """'data=64,tensor=8' (size-1 axes left out; 'data=1' for one device)."""
        return ",".join(f"{a}={s}" for a, s in self.mesh.items() if s > 1) or "data=1"


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_layouts(devices: int, batch_size: int, num_heads: int, mlp_dim: int,
                      width: int, devices_per_node: int, remats=REMATS,
                      max_micro_batches: int = 0) -> list[Layout]:
    """Every valid layout (module docstring) for `devices` devices.

    Args:
      devices: the device count; batch_size: the global batch (sequences per step);
      num_heads, mlp_dim, width: the model's; devices_per_node: tensor's upper bound;
      remats: the policies to try; max_micro_batches: > 0 caps the micro-batches.
    """
    out = []
    for tensor in divisors(devices):
        if tensor > devices_per_node or num_heads % tensor or mlp_dim % tensor:
            continue
        for fsdp in divisors(devices // tensor):
            data = devices // tensor // fsdp
            if width % fsdp or batch_size % (data * fsdp):
                continue
            for micro in divisors(batch_size // (data * fsdp)):
                if max_micro_batches and micro > max_micro_batches:
                    continue
                out += [Layout(data, fsdp, tensor, micro, r) for r in remats]
    return out


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A layout with its memory, communication and roofline."""
    layout: Layout
    memory_bytes: float                 # per device, the layout's remat
    fits: bool
    comm_bytes: dict[str, float]        # per device per step, by axes label
    flops_per_device: float             # with remat recompute
    time: roofline.StepTime
    tokens_per_step: int
    overlap: bool = False               # rank by max(compute, comm) instead of the sum

    @property
    def step_s(self) -> float:
        return self.time.overlapped_s if self.overlap else self.time.serial_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s

    def to_dict(self) -> dict:
        return {"mesh": self.layout.mesh, "micro_batches": self.layout.micro_batches,
                "remat": self.layout.remat, "memory_bytes": self.memory_bytes,
                "fits": self.fits, "comm_bytes": dict(self.comm_bytes),
                "flops_per_device": self.flops_per_device, "step_s": self.step_s,
                "tokens_per_s": self.tokens_per_s, "roofline": self.time.to_dict()}


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Those that fit, fastest first; ties (the roofline does not see matmul sizes) go to
    fewer micro-batches (larger matmuls), then to less memory."""
    return sorted((c for c in candidates if c.fits),
                  key=lambda c: (round(c.step_s, 9), c.layout.micro_batches, c.memory_bytes))


# ------------------------------------------------------------------------ the real model

def _param_table(spec, rules_name: str) -> list[tuple]:
    """(path, shape, itemsize, mesh spec before fitting, stacked layers) per parameter."""
    import flax.linen as nn  # noqa: PLC0415
    import jax  # noqa: PLC0415
    from jax.sharding import PartitionSpec  # noqa: PLC0415

    from scaling.models import abstract_params  # noqa: PLC0415
    from scaling.sharding import logical_rules  # noqa: PLC0415

    boxed = abstract_params(dataclasses.replace(spec, scan_layers=True))
    mesh_specs = nn.logical_to_mesh(nn.get_partition_spec(boxed), logical_rules(rules_name))
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    leaves = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=is_box)[0]
    specs = jax.tree.leaves(mesh_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
    table = []
    for (path, leaf), pspec in zip(leaves, specs):
        value = leaf.unbox(apply_constraint=False) if is_box(leaf) else leaf
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        layers = value.shape[0] if "layers" in keys else 0
        table.append(("/".join(keys), tuple(value.shape), value.dtype.itemsize, pspec, layers))
    return table


class _Sizes:
    """What sharding.fit_spec reads of a mesh: .shape[axis]."""

    def __init__(self, sizes: dict[str, int]):
        self.shape = sizes


def comm_params(table: list[tuple], mesh: dict[str, int]) -> list:
    """scaling.comm_model.Params of the model on `mesh` (specs fitted as sharding does)."""
    from scaling.comm_model import Param  # noqa: PLC0415
    from scaling.nn.logical import fit_spec  # noqa: PLC0415

    return [Param(path, shape, itemsize, tuple(fit_spec(pspec, shape, _Sizes(mesh))[0]),
                  layers) for path, shape, itemsize, pspec, layers in table]


def memory_of(layout: Layout, spec, params_total: int, batch_size: int, seq_len: int,
              objective: str, target_len: int = 0) -> float:
    """Bytes per device of `layout` (plan.memory_per_device at the layout's remat), traced
    at 1 and 2 rows per micro-batch and extrapolated linearly (module docstring)."""
    from scaling.plan import memory_per_device  # noqa: PLC0415

    dp = layout.data * layout.fsdp
    rows = batch_size // (dp * layout.micro_batches)
    remat_spec = dataclasses.replace(spec, remat=layout.remat)

    def at(r: int) -> float:
        return memory_per_device(params_total, remat_spec, layout.mesh,
                                 dp * layout.micro_batches * r, seq_len, layout.micro_batches,
                                 objective, target_len).total_config

    if rows <= 2:
        return at(rows)
    one, two = at(1), at(2)
    return one + (rows - 1) * (two - one)


def search(config, devices: int, device: str, mfu: float = roofline.DEFAULT_MFU,
           overlap: bool = False, remats=REMATS, max_micro_batches: int = 0,
           hw=None) -> dict:
    """Every layout of `config` on `devices` x `device`, sized, timed and ranked.

    Args:
      config: the experiment config (its train.batch_size is kept).
      devices, device: how many of which scaling.hardware.DEVICES entry.
      mfu: the roofline's assumed fraction of peak.
      overlap: rank by max(compute, comm) instead of compute + comm.
      remats, max_micro_batches: narrow the enumeration.
      hw: a DeviceSpec to use instead of DEVICES[device] (tests).

    Returns:
      {"ranked": [Candidate] that fit, fastest first, "considered": how many layouts,
       "excluded": how many did not fit, plus the model and device facts printed beside}.
    Raises:
      ValueError: one line naming the bad option or field.
    """
    from scaling.comm_model import expected, step_shape, totals  # noqa: PLC0415
    from scaling.hardware import DEVICES  # noqa: PLC0415
    from scaling.models import model_spec  # noqa: PLC0415
    from scaling.sizes import count_params  # noqa: PLC0415

    if hw is None:
        if device.lower() not in DEVICES:
            raise ValueError(f"--device: unknown {device!r}; known: {', '.join(DEVICES)}")
        hw = DEVICES[device.lower()]
    if devices < 1:
        raise ValueError(f"--devices: must be positive, got {devices}")
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu: must be in (0, 1], got {mfu}")
    spec = model_spec(config)
    if spec.family not in ("decoder", "encoder"):
        raise ValueError(f"model.family: --search covers decoder and encoder models (the "
                         f"communication model's), not {spec.family!r}")
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    target_len, objective = config.data.target_len, config.data.objective
    layouts = enumerate_layouts(devices, batch_size, spec.num_heads, spec.mlp_dim,
                                spec.width, hw.devices_per_node, remats, max_micro_batches)
    if not layouts:
        raise ValueError(f"--devices: no layout of {devices} devices divides train.batch_size="
                         f"{batch_size} and model.num_heads={spec.num_heads}; pick a device "
                         "count that divides the batch")
    peak = roofline.compute_peak(hw, spec.dtype)
    counts = count_params(spec)
    table = _param_table(spec, config.parallel.rules)
    model_flops = spec.train_flops_per_sequence(seq_len, target_len) * batch_size / devices
    tokens = spec.tokens_per_sequence(seq_len, target_len) * batch_size
    comm_cache: dict[tuple, dict] = {}
    candidates = []
    for layout in layouts:
        key = (layout.data, layout.fsdp, layout.tensor, layout.micro_batches)
        if key not in comm_cache:
            params = comm_params(table, layout.mesh)
            shape = step_shape(spec, params, layout.mesh, batch_size, seq_len,
                               layout.micro_batches)
            comm_cache[key] = totals(expected(params, shape, layout.mesh))
        comm = comm_cache[key]
        flops = model_flops * REMAT_FLOPS[layout.remat]
        memory = memory_of(layout, spec, counts.total, batch_size, seq_len, objective,
                           target_len)
        candidates.append(Candidate(
            layout, memory, memory <= hw.hbm_bytes, comm, flops,
            roofline.step_time(flops, peak, comm, hw, layout.mesh, mfu), tokens, overlap))
    ranked = rank(candidates)
    # What XLA's CPU compiler emits for the top three (what --aot compiles): no
    # reduce-scatter, more tensor all-reduces (scaling.comm_model, xla_cpu=True), and
    # bfloat16 activations all-reduced in float32 (the HLO's tensor buffers are B x T x D x 4
    # bytes: the CPU backend reduces no bfloat16).
    xla_cpu = []
    for c in ranked[:3]:
        params = comm_params(table, c.layout.mesh)
        shape = step_shape(spec, params, c.layout.mesh, batch_size, seq_len,
                           c.layout.micro_batches)
        shape = dataclasses.replace(shape, act_bytes=max(shape.act_bytes, 4))
        xla_cpu.append(totals(expected(params, shape, c.layout.mesh, xla_cpu=True)))
    own = config_layout(config, devices, spec.remat)
    mine = [c for c in candidates if c.layout == own]
    return {"model": spec.name, "config": config.get("experiment", ""),
            "params": counts.backbone, "device": hw.name, "devices": devices,
            "hbm_bytes": hw.hbm_bytes, "peak_flops": peak, "mfu": mfu, "overlap": overlap,
            "batch_size": batch_size, "seq_len": seq_len, "tokens_per_step": tokens,
            "devices_per_node": hw.devices_per_node, "interconnect": hw.interconnect,
            "considered": len(candidates), "excluded": len(candidates) - len(ranked),
            "ranked": ranked, "xla_cpu_comm_top3": xla_cpu, "config_layout": own,
            "config_candidate": mine[0] if mine else None,
            "config_rank": next((i + 1 for i, c in enumerate(ranked) if c.layout == own),
                                None)}


def config_layout(config, devices: int, remat: str) -> Layout | None:
    """The config's own layout on `devices` (parallel.mesh, the recipe's per-device
    micro-batch, model.remat), or None where its mesh does not resolve for that count."""
    from scaling.mesh import mesh_shape, recipe_micro_batches  # noqa: PLC0415

    try:
        mesh = mesh_shape(config.parallel.mesh, devices)
    except ValueError:
        return None
    micro = recipe_micro_batches(config.parallel, config.train, mesh)
    return Layout(mesh["data"], mesh["fsdp"], mesh["tensor"], micro, remat)


# ----------------------------------------------------------------------------- formatting

def _gib(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _sec(s: float) -> str:
    return f"{s:.2f}s" if s >= 0.1 else f"{1e3 * s:.1f}ms" if s >= 1e-4 else f"{1e6 * s:.0f}us"


def _axes_text(values: dict[str, float], fmt) -> str:
    """'data 0.65s, fsdp 0.12s', largest first; terms under 1% of the largest left out."""
    big = max(values.values(), default=0.0)
    kept = sorted(((k, v) for k, v in values.items() if v > 0 and v >= big / 100),
                  key=lambda kv: -kv[1])
    return ", ".join(f"{k} {fmt(v)}" for k, v in kept) or "none"


def format_search(r: dict, top: int = 5, aot: list[dict] | None = None) -> str:
    """The ranked layouts as a table; --aot's XLA figures under the first three rows."""
    hbm = r["hbm_bytes"]
    order = "max(compute, comm) (overlap)" if r["overlap"] else "compute + comm (no overlap)"
    lines = [
        f"{r['model']} ({r['config']}), {r['params']:,} params, batch {r['batch_size']} x "
        f"{r['seq_len']} = {r['tokens_per_step']:,} tokens/step",
        f"on {r['devices']} x {r['device']}: {hbm / 2**30:.0f} GiB HBM, "
        f"{r['peak_flops'] / 1e12:.0f} TFLOP/s peak at {100 * r['mfu']:.0f}% MFU; groups "
        f"within {r['devices_per_node']} devices on {r['interconnect'].replace(';', ', else')}",
        f"{r['considered']} layouts, {r['excluded']} do not fit; ranked by step time = "
        f"{order}",
        f"{'#':>3} {'mesh':<24}{'micro':>6} {'remat':<6}{'memory':>10}{'HBM':>5}"
        f"{'compute':>9}{'comm':>8}{'step':>8}{'tokens/s':>11}{'comm%':>6}  bound; comm by axis",
    ]

    def row(i, c: Candidate) -> str:
        t = c.time
        return (f"{i:>3} {c.layout.mesh_text:<24}{c.layout.micro_batches:>6} "
                f"{c.layout.remat:<6}{_gib(c.memory_bytes):>10}"
                f"{100 * c.memory_bytes / hbm:>4.0f}%{_sec(t.compute_s):>9}"
                f"{_sec(t.comm_total_s):>8}{_sec(c.step_s):>8}{c.tokens_per_s:>11,.0f}"
                f"{100 * t.comm_share:>5.0f}%  {t.bound}; " + _axes_text(t.comm_s, _sec))

    for i, c in enumerate(r["ranked"][:top], 1):
        lines.append(row(i, c))
        if aot is not None and i <= len(aot):
            a = aot[i - 1]
            if "error" in a:
                lines.append(f"      AOT: n/a ({a['error']})")
                continue
            hlo = (a.get("collectives") or {}).get("totals", {}).get("by_axes", {})
            lines.append(f"      AOT (XLA CPU): peak {_gib(a['memory_per_device']['peak'])}; "
                         f"HLO collectives per device per step: {_axes_text(hlo, _gib)}")
            lines.append(f"      estimate:      {_gib(c.memory_bytes)}; comm model: "
                         f"{_axes_text(c.comm_bytes, _gib)}; its XLA CPU variant: "
                         f"{_axes_text(r['xla_cpu_comm_top3'][i - 1], _gib)}")
    if not r["ranked"]:
        lines.append("    (no layout fits: more devices, or a device with more HBM)")
    own, mine, where = r["config_layout"], r["config_candidate"], r["config_rank"]
    if own is not None and mine is not None:
        verdict = (f"rank {where} of {len(r['ranked'])}" if where else
                   f"does NOT fit ({_gib(mine.memory_bytes)})")
        lines.append(f"the config's own layout ({own.mesh_text}, micro {own.micro_batches}, "
                     f"remat {own.remat}): {verdict}, step {_sec(mine.step_s)}, "
                     f"{mine.tokens_per_s:,.0f} tokens/s, {_gib(mine.memory_bytes)}, "
                     f"{mine.time.bound}")
    lines.append("memory: scaling.plan's estimate (fp32 AdamW state, traced activations); "
                 "comm: ring bytes of DP/FSDP/TP (scaling.comm_model); MFU assumed equal for "
                 "every layout")
    return "\n".join(lines)
