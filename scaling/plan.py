"""The planner: parameters, FLOPs, compute-optimal tokens, time and memory of a config.

Everything here is arithmetic on the config (plus `jax.eval_shape` to count parameters), so
it answers for an 8.3B model in a second on a laptop. The formulas, and which convention
each number uses:

- Parameters P: `scaling.sizes.count_params` (backbone, as published); N = non-embedding.
- FLOPs per token: `ModelSpec.flops_per_token` (PaLM: 6·N_mm + 12·L·T·d, N_mm = matmul
  weights including the output projection) at the config's data.seq_len.
- Compute-optimal tokens D = 20 · P (Hoffmann et al. 2022's ~20 tokens per parameter).
- Training FLOPs = FLOPs/token · D (PaLM convention); 6·P·D is printed beside it.
- Wall-clock = training FLOPs / (devices · peak bf16 dense FLOP/s · MFU); device-hours =
  wall-clock hours · devices. Peaks and HBM: `scaling.hardware.DEVICES`.

Memory per device for the (data, fsdp, tensor) mesh, training with AdamW in fp32 master
weights (what `scaling train` does), at b = batch / (data·fsdp) / micro_batches rows:
- parameters 4 B/param, gradients 4 B/param, AdamW moments 8 B/param, each divided by
  fsdp · tensor (assumes every parameter is split over both; biases and norms are in fact
  replicated, a small error); with micro_batches > 1 another 4 B/param holds the summed
  gradients while each micro-batch's are computed;
- activations: what autodiff saves for the backward pass, traced from the model itself
  (scaling.activations: per-layer and other residuals, real dtypes, after model.remat),
  at the accelerator math (model.kernels='reference'); with full remat, each layer's input
  plus the largest residual of a layer while it is recomputed (XLA frees a recomputed
  layer's residuals as its backward pass consumes them);
- bfloat16 compute: the parameters and their gradients in bfloat16, 4 B/param / (fsdp ·
  tensor): XLA hoists the per-layer casts out of the scanned layer loop;
- logits: the float32 gradient of the logits, s·b·V·4 bytes / t, live beside the saved
  logits when the backward pass starts.
The result is an estimate for sizing a job; `scaling compile` gives XLA's own figure for a
mesh of fake devices, and the planner runs it beside this estimate with --aot.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

from scaling.mesh import mesh_shape, parse_mesh, recipe_micro_batches

TOKENS_PER_PARAM = 20          # Hoffmann et al. 2022 (Chinchilla)
GiB = 2**30

# Training set and hardware as published (../shared/REFERENCE.md), for the --table column.
PUBLISHED_TRAINING = {
    "transformer:base": "8 P100, 12 hours",
    "transformer:big": "8 P100, 3.5 days",
    "bert:base": "13 GB text",
    "bert:large": "13 GB text",
    "xlnet:large": "126 GB; 512 TPU-v3, 2.5 days",
    "roberta:large": "160 GB; 1024 V100, 1 day",
    "gpt2:xl": "40 GB text",
    "megatron:8b3": "174 GB; 512 V100, 9 days",
}


@dataclasses.dataclass
class Memory:
    """Bytes per device."""
    params: float
    grads: float
    optimizer: float
    grad_accumulation: float    # micro_batches > 1: the running sum of gradients
    compute_copies: float       # bfloat16: the parameters and gradients in the compute dtype
    activations: float          # no remat
    activations_remat: float    # model.remat='full'
    activations_config: float   # the config's model.remat
    logits: float               # float32 gradient of the logits

    @property
    def state(self) -> float:
        return self.params + self.grads + self.optimizer

    def _with(self, activations: float) -> float:
        return (self.state + self.grad_accumulation + self.compute_copies + activations
                + self.logits)

    @property
    def total(self) -> float:
        return self._with(self.activations)

    @property
    def total_remat(self) -> float:
        return self._with(self.activations_remat)

    @property
    def total_config(self) -> float:
        return self._with(self.activations_config)


def activation_bytes_per_layer(seq_len: int, rows: float, width: int, heads: int,
                               tensor: int = 1, dtype_bytes: int = 2) -> float:
    """Korthikanti et al. 2022, eq. 2 with tensor parallelism: s·b·h·(10 + 24/t + 5·a·s/(h·t))
    bytes at 16 bits, scaled by dtype_bytes / 2 (the paper's rule of thumb; the planner
    traces the model instead, see scaling.activations)."""
    s, b, h, a, t = seq_len, rows, width, heads, tensor
    return s * b * h * (10 + 24 / t + 5 * a * s / (h * t)) * dtype_bytes / 2


def memory_per_device(params: int, spec, mesh: dict[str, int], batch_size: int,
                      seq_len: int, micro_batches: int = 1, objective: str = "causal_lm",
                      target_len: int = 0) -> Memory:
    """The formulas of the module docstring, for one device of `mesh`."""
    from scaling.activations import residuals  # noqa: PLC0415  (imports JAX, Flax)

    shard = mesh["fsdp"] * mesh["tensor"]
    micro = max(micro_batches, 1)
    rows = batch_size / (mesh["data"] * mesh["fsdp"]) / micro
    two_stacks = spec.family in ("encoder_decoder", "captioning")
    layers = spec.num_layers + (spec.decoder_layers if two_stacks else 0)
    t = mesh["tensor"]
    trace = dict(objective=objective, rows=rows, seq_len=seq_len, target_len=target_len,
                 tensor=t)
    plain = residuals(spec, remat="none", **trace)
    full = residuals(spec, remat="full", **trace)
    chosen = {"none": plain, "full": full}.get(spec.remat) or residuals(spec, **trace)
    # Recomputing a layer in the backward pass frees its residuals as it goes: XLA holds
    # about the largest of them at a time (the attention probabilities).
    recompute = 0.0 if spec.remat == "none" else plain.largest
    logits = rows * (target_len or seq_len) * spec.padded_vocab_size * 4 / t
    compute_copies = 4 * params / shard if spec.dtype == "bfloat16" else 0.0
    return Memory(params=4 * params / shard, grads=4 * params / shard,
                  optimizer=8 * params / shard,
                  grad_accumulation=4 * params / shard if micro > 1 else 0.0,
                  compute_copies=compute_copies, activations=plain.total(layers),
                  activations_remat=full.total(layers) + plain.largest,
                  activations_config=chosen.total(layers) + recompute, logits=logits)


def resolve_mesh(config, devices: int | None, mesh_text: str | None) -> dict[str, int]:
    """Mesh sizes from --mesh (data=8,...) or the config's parallel.mesh over --devices
    (default: the recipe's parallel.recipe_devices, else 1)."""
    if mesh_text:
        sizes = parse_mesh(mesh_text)
        if devices is not None and math.prod(sizes.values()) != devices:
            raise ValueError(f"--mesh: {mesh_text} has {math.prod(sizes.values())} devices "
                             f"but --devices is {devices}")
        return sizes
    return mesh_shape(config.parallel.mesh.to_dict(),
                      devices or config.parallel.get("recipe_devices", 0) or 1)


def plan(config, devices: int | None = None, device: str = "h100", mfu: float = 0.45,
         mesh_text: str | None = None) -> dict:
    """Every number the planner prints, for one config (raw units: bytes, FLOPs, seconds).

    Raises:
      ValueError: one line naming the bad option or field.
    """
    from scaling.hardware import DEVICES  # noqa: PLC0415
    from scaling.models import model_spec  # noqa: PLC0415
    from scaling.sizes import count_params  # noqa: PLC0415

    if device.lower() not in DEVICES:
        raise ValueError(f"--device: unknown {device!r}; known: {', '.join(DEVICES)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu: must be in (0, 1], got {mfu}")
    hw = DEVICES[device.lower()]
    spec = model_spec(config)
    mesh = resolve_mesh(config, devices, mesh_text)
    n_devices = math.prod(mesh.values())
    counts = count_params(spec)
    seq_len, target_len = config.data.seq_len, config.data.target_len
    flops_per_token = spec.flops_per_token(seq_len, target_len)
    tokens = TOKENS_PER_PARAM * counts.backbone
    train_flops = flops_per_token * tokens
    seconds = train_flops / (n_devices * hw.peak_flops_bf16 * mfu)
    # A published recipe keeps its per-device micro-batch on this mesh (scaling.mesh).
    micro = recipe_micro_batches(config.parallel, config.train, mesh)
    mem = memory_per_device(counts.total, spec, mesh, config.train.batch_size, seq_len,
                            micro, config.data.objective, target_len)
    return {
        "model": spec.name, "config": config.get("experiment", ""),
        "params": counts.backbone, "params_trained": counts.total,
        "non_embedding_params": counts.non_embedding,
        "flops_per_token": flops_per_token,
        "flops_per_token_kaplan": spec.flops_per_token(seq_len, target_len, "kaplan"),
        "seq_len": seq_len, "batch_size": config.train.batch_size,
        "micro_batches": micro, "dtype": spec.dtype,
        "tokens": tokens, "train_flops": train_flops,
        "train_flops_6pd": 6.0 * counts.backbone * tokens,
        "device": hw.name, "peak_flops": hw.peak_flops_bf16, "hbm_bytes": hw.hbm_bytes,
        "mfu": mfu, "devices": n_devices, "mesh": mesh,
        "seconds": seconds, "device_hours": seconds * n_devices / 3600,
        "remat": spec.remat,
        "memory": dataclasses.asdict(mem) | {"state": mem.state, "total": mem.total,
                                             "total_remat": mem.total_remat,
                                             "total_config": mem.total_config},
        "fits": mem.total <= hw.hbm_bytes, "fits_remat": mem.total_remat <= hw.hbm_bytes,
    }


def aot_memory(config_arg: str, overrides: list[str], mesh: dict[str, int],
               device: str, timeout_s: float = 600) -> dict:
    """XLA's per-device memory from `scaling compile --json` (a fresh process: the fake
    device count must be set before JAX starts). Returns its report, or {"error": why}."""
    mesh_text = ",".join(f"{a}={s}" for a, s in mesh.items())
    cmd = [sys.executable, "-m", "scaling.cli", "compile", "--config", config_arg,
           "--mesh", mesh_text, "--device", device, "--json", *overrides]
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)    # compile sets its own device count
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"scaling compile took longer than {timeout_s:.0f}s"}
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {out.returncode}"}
    try:
        return json.loads(out.stdout[out.stdout.index("{"):])
    except ValueError:
        return {"error": "unreadable scaling compile output"}


# ----------------------------------------------------------------------------- formatting

def _bytes(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.1f} min"


def format_plan(p: dict, aot: dict | None = None) -> str:
    m = p["memory"]
    mesh = ", ".join(f"{a}={s}" for a, s in p["mesh"].items())
    hbm = p["hbm_bytes"]

    def verdict(total):
        return f"{'fits' if total <= hbm else 'does NOT fit'} ({100 * total / hbm:.0f}% of HBM)"

    lines = [
        f"{p['model']} ({p['config']})",
        f"  parameters          {p['params']:,} ({p['non_embedding_params']:,} non-embedding)",
        f"  FLOPs/token         {p['flops_per_token']:.4g} (PaLM 6N+12LTd at T={p['seq_len']}; "
        f"Kaplan {p['flops_per_token_kaplan']:.4g})",
        f"  optimal tokens      {p['tokens']:.4g} ({TOKENS_PER_PARAM} tokens/parameter)",
        f"  training FLOPs      {p['train_flops']:.4g} (FLOPs/token x tokens; 6PD = "
        f"{p['train_flops_6pd']:.4g})",
        f"  on {p['devices']} x {p['device']} at {100 * p['mfu']:.0f}% MFU "
        f"({p['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak each): "
        f"{_duration(p['seconds'])} wall-clock, {p['device_hours']:,.0f} device-hours",
        f"  memory per device, mesh {mesh}, batch {p['batch_size']} x {p['seq_len']}, "
        f"micro_batches {p['micro_batches']}, {p['dtype']} activations:",
        f"    parameters (fp32)        {_bytes(m['params']):>12}",
        f"    gradients (fp32)         {_bytes(m['grads']):>12}",
        f"    AdamW moments (2 x fp32) {_bytes(m['optimizer']):>12}",
        f"    gradient accumulation    {_bytes(m['grad_accumulation']):>12}",
        f"    bf16 params + gradients  {_bytes(m['compute_copies']):>12}",
        f"    activations, no remat    {_bytes(m['activations']):>12}",
        f"    activations, full remat  {_bytes(m['activations_remat']):>12}",
        f"    logits gradient (fp32)   {_bytes(m['logits']):>12}",
        f"    total, no remat          {_bytes(m['total']):>12}   {verdict(m['total'])} of "
        f"{_bytes(hbm)}",
        f"    total, full remat        {_bytes(m['total_remat']):>12}   "
        f"{verdict(m['total_remat'])}",
        f"    total, remat {p['remat']:<11} {_bytes(m['total_config']):>12}   "
        f"{verdict(m['total_config'])} (the config's)",
    ]
    if aot is not None:
        if "error" in aot:
            lines.append(f"    AOT compile (XLA)        {'n/a':>12}   ({aot['error']})")
        else:
            peak = aot["memory_per_device"]["peak"]
            lines.append(f"    AOT compile (XLA) peak   {_bytes(peak):>12}   "
                         f"(scaling compile, remat {aot.get('remat')}, CPU compiler)")
    else:
        lines.append("    AOT compile (XLA)        (add --aot for `scaling compile`'s figure)")
    return "\n".join(lines)


def row_config(row):
    """The config of a size-table row at its published context length (model.max_len)."""
    from scaling.config_loading import load  # noqa: PLC0415

    config = load(f"experiments/{row.experiment}.py:{row.variant}")
    context = row.max_len - config.model.position_offset  # RoBERTa: 514 rows, 512 tokens
    config.data.seq_len = context
    # Counting traces the model's init: one scanned layer traces much faster than 72
    # unrolled ones and has the same parameters (stacked along a 'layers' axis).
    config.model.scan_layers = True
    if config.data.target_len:
        config.data.target_len = context
    return config


def table_rows(size_table, devices: int, device: str, mfu: float,
               include_all: bool = False) -> list[dict]:
    """One plan per size-table row, at the row's published context length (model.max_len).

    Args:
      size_table: the rows of experiments/size_table.py (the caller passes them: the
        library does not import the experiments).
    """

    out = []
    for row in size_table:
        if not (row.in_table or include_all):
            continue
        config = row_config(row)
        p = plan(config, devices=devices, device=device, mfu=mfu,
                 mesh_text=f"data={devices}")
        p["name"] = row.name
        p["published_training"] = PUBLISHED_TRAINING.get(row.key, "")
        out.append(p)
    return out


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    header = (f"{'model':<18} {'params':>8} {'FLOP/tok':>9} {'T':>5} {'tokens':>8} "
              f"{'train FLOPs':>11} {'time':>11} {'dev-hours':>10} {'state/dev':>10} {'fits':>4}  "
              "published (data; hardware, time)")
    lines = [header]
    for p in rows:
        lines.append(
            f"{p['name']:<18} {_count(p['params']):>8} {p['flops_per_token']:>9.3g} "
            f"{p['seq_len']:>5} {_count(p['tokens']):>8} {p['train_flops']:>11.3g} "
            f"{_duration(p['seconds']):>11} "
            f"{p['device_hours']:>10,.{0 if p['device_hours'] >= 10 else 1}f} "
            f"{_bytes(p['memory']['state']):>10} "
            f"{'yes' if p['memory']['state'] <= p['hbm_bytes'] else 'no':>4}  "
            f"{p['published_training']}")
    lines.append(
        f"tokens = {TOKENS_PER_PARAM} x params (compute-optimal); train FLOPs = FLOPs/token x "
        f"tokens (PaLM 6N + 12LTd at T = the row's context length); time on {r0['devices']} x "
        f"{r0['device']} at {100 * r0['mfu']:.0f}% MFU; state/dev = fp32 params + grads + AdamW "
        "(16 B/param) per device with pure data parallelism; fits = that state alone fits the "
        "device's HBM (activations come on top: plan one config for the full picture)")
    return "\n".join(lines)
