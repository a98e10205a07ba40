"""Train-step throughput: tokens/s, achieved TFLOP/s and MFU on whatever backend is present.

    python benchmarks/throughput.py --bench cpu-small cpu-base
    python benchmarks/throughput.py --config experiments/gpt2.py:small --batch 8 --dtype bfloat16

Times the train step that `scaling train` runs (scaling.compile_step: forward, backward,
AdamW; state donated except on CPU) on one device, on random tokens after warm-up, one step
at a time (each blocked until done), and reports the median and the min-max of N steps. Model FLOPs use 6N + 12·L·T·d (PaLM / nanoGPT). The peak is the
accelerator's bf16 table entry (scaling.hardware), or on CPU a fp32 matmul probe measured in
this same process just before the steps, so the ratio compares like with like. Like
`scaling train`, it first restarts itself once with malloc tunables that keep XLA CPU's step
buffers for reuse, and runs steps on the calling thread (scaling/runtime/host_malloc.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from scaling.config_loading import load
from scaling.hardware import device_peak_flops, probe_cpu_peak
from scaling import runtime
from scaling import sharding
from scaling.batch_spec import batch_spec
from scaling.compile_step import compile_step
from scaling.models import build_model, example_batch, model_spec
from scaling.optim import make_optimizer, make_schedule

# Named benchmark configs (issue 9): decoder, byte vocabulary, fp32, no dropout.
BENCHES = {
    "cpu-small": dict(config="experiments/gpt2.py:tiny", num_layers=6, width=384, num_heads=6,
                      mlp_dim=1536, seq_len=256, batch=8),
    "cpu-base": dict(config="experiments/gpt2.py:tiny", num_layers=12, width=768, num_heads=12,
                     mlp_dim=3072, seq_len=512, batch=4),
    "gpt2-small": dict(config="experiments/gpt2.py:small", seq_len=1024, batch=8),
    "gpt2-medium": dict(config="experiments/gpt2.py:medium", seq_len=1024, batch=8),
    "gpt2-xl": dict(config="experiments/gpt2.py:xl", seq_len=1024, batch=4),
}


def bench_config(config_path: str, *, seq_len: int, batch: int, dtype: str,
                 overrides: dict):
    config = load(config_path)
    model = {k: v for k, v in overrides.items() if k in config.model}
    config.model.update(dropout=0.0, dtype=dtype, max_len=max(config.model.max_len, seq_len),
                        **model)
    config.data.seq_len = seq_len
    config.train.batch_size = batch
    return config


def parse_overrides(items: list[str]) -> dict:
    """["scan_layers=True", "attention_block=64", "remat=dots"] -> typed model overrides."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = json.loads(value.lower()) if value.lower() in ("true", "false") or \
            value.replace(".", "", 1).isdigit() else value
    return out


def compile_train_step(config, donate: bool | None = None):
    """The train step `scaling train` runs (scaling.compile_step, AdamW) on a one-device mesh,
    compiled, with its initial state and a batch of random tokens:
    (compiled, state, batch, spec, compile_s). The state is donated as run() does
    (donate=None: state_donation()), or as `donate` says."""
    spec = model_spec(config)
    model = build_model(spec)
    tx = make_optimizer(config.optim, 1000)
    schedule = make_schedule(config.optim, 1000)
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    rules = sharding.logical_rules(config.parallel.rules)
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    ids = np.random.default_rng(0).integers(5, spec.vocab_size, (batch_size, seq_len + 1))
    values = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": 1.0}
    batch = {k: jnp.asarray(np.broadcast_to(values[k], shape), dtype)
             for k, (shape, dtype) in batch_spec("causal_lm", batch_size, seq_len).items()}

    rng = jax.random.PRNGKey(0)
    layout = sharding.train_state_layout(model, tx, example_batch(spec, 1, seq_len), rng, mesh,
                                         rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        state = layout.create(rng)
    step = compile_step(model, tx, schedule, config.train, layout, mesh, rules, batch, state,
                        donate=donate)
    return step.fn, state, batch, spec, step.lower_s + step.compile_s


def time_train_step(config, steps: int, warmup: int) -> dict:
    """Median seconds per train step (and min, max) of a single-device jitted step."""
    compiled, state, batch, spec, compile_s = compile_train_step(config)
    for _ in range(warmup):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    return dict(spec=spec, compile_s=compile_s, median_s=statistics.median(times),
                min_s=min(times), max_s=max(times), loss=float(metrics["loss"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", nargs="*", default=[], choices=sorted(BENCHES),
                        help="named benchmark configs")
    parser.add_argument("--config", help="an experiment config instead, e.g. "
                        "experiments/gpt2.py:small")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median of these)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--micro-batches", type=int, default=1,
                        help="gradient accumulation steps per update (train.micro_batches)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="model overrides, e.g. --set scan_layers=True remat=dots")
    parser.add_argument("--peak-repeats", type=int, default=3,
                        help="CPU: readings of the matmul probe (best = peak; spread shown)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.peak_repeats < 1:
        parser.error(f"--peak-repeats must be >= 1, got {args.peak_repeats}")
    if not args.bench and not args.config:
        args.bench = ["cpu-small"]

    extra = parse_overrides(args.set)
    jobs = [(name, dict(BENCHES[name])) for name in args.bench]
    if args.config:
        jobs.append((args.config, dict(config=args.config, seq_len=args.seq_len,
                                       batch=args.batch)))

    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    rows = []
    for name, job in jobs:
        config = bench_config(job.pop("config"), seq_len=job.pop("seq_len"),
                              batch=job.pop("batch"), dtype=args.dtype, overrides={**job, **extra})
        if args.micro_batches < 1 or config.train.batch_size % args.micro_batches:
            parser.error(f"--micro-batches {args.micro_batches} must be >= 1 and divide "
                         f"{name}'s batch of {config.train.batch_size}")
        config.train.micro_batches = args.micro_batches
        timing = time_train_step(config, args.steps, args.warmup)
        spec = timing["spec"]
        spread = load = None
        if on_cpu:  # the probe right after the steps, in this process, on the same threads
            probe = probe_cpu_peak(args.peak_repeats)
            peak, source = probe["flops_per_s"], "fp32 matmul probe, this process"
            spread, load = probe["spread"], probe["load"]
        else:
            peak, source = device_peak_flops(device)
        tokens = config.train.batch_size * config.data.seq_len
        flops = spec.train_flops_per_sequence(config.data.seq_len) * config.train.batch_size
        rate = flops / timing["median_s"]
        rows.append(dict(
            bench=name, device=device.device_kind, dtype=args.dtype, layers=spec.num_layers,
            width=spec.width, seq_len=config.data.seq_len, batch=config.train.batch_size,
            compile_s=round(timing["compile_s"], 2),
            tokens_per_s=tokens / timing["median_s"],
            tokens_per_s_min=tokens / timing["max_s"], tokens_per_s_max=tokens / timing["min_s"],
            model_gflops_per_s=rate / 1e9, peak_gflops_per_s=peak / 1e9, peak_source=source,
            peak_spread=spread, peak_load=load,
            mfu=rate / peak if peak and rate <= peak else None))  # > 1: the peak is wrong

    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"device: {device.device_kind} ({jax.device_count()} visible), jax {jax.__version__}, "
          f"steps: median of {args.steps} after {args.warmup} warm-up")
    header = (f"{'bench':<12} {'dtype':<8} {'L':>3} {'D':>5} {'T':>5} {'B':>3} "
              f"{'tokens/s (min-max)':>24} {'model GFLOP/s':>13} {'peak GFLOP/s':>12} "
              f"{'spread':>6} {'MFU':>6}")
    print(header)
    for r in rows:
        span = f"{r['tokens_per_s']:,.0f} ({r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f})"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        spread = f"{100 * r['peak_spread']:.1f}%" if r["peak_spread"] is not None else "-"
        print(f"{r['bench']:<12} {r['dtype']:<8} {r['layers']:>3} {r['width']:>5} "
              f"{r['seq_len']:>5} {r['batch']:>3} {span:>24} {r['model_gflops_per_s']:>13.1f} "
              f"{r['peak_gflops_per_s']:>12.1f} {spread:>6} {mfu:>6}")
    print("model FLOPs: 6N + 12·L·T·d per token (PaLM / nanoGPT convention)")
    if on_cpu:
        loads = [r["peak_load"] for r in rows if r["peak_load"] is not None]
        print(f"peak: best of {args.peak_repeats} fp32 matmul readings; spread = (best - min) / "
              f"best" + (f"; load before the probe up to {max(loads):.2f} per core" if loads
                         else ""))
    return 0


if __name__ == "__main__":
    runtime.setup()  # as `scaling train` does, so steps time alike
    sys.exit(main())
