"""Compile time of the train step against depth, scanned vs unrolled layers.

    python benchmarks/compile_depth.py --layers 12 48

Lowers and compiles the real train step as run() does (GPT-2 small width, T=128, batch 4,
one CPU device) from abstract shapes; prints seconds per compile. With scan_layers the layer body is
compiled once, so compile time should stay flat in depth.
"""
from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from scaling.checkpoint import abstract_train_state
from scaling.config_loading import load
from scaling.models import build_model, model_spec
from scaling.optim import make_optimizer, make_schedule
from scaling.train_step import make_train_step, state_donation


def compile_seconds(layers: int, scan: bool, seq_len: int = 128, batch: int = 4) -> float:
    config = load("experiments/gpt2.py:small")
    config.model.update(num_layers=layers, scan_layers=scan)
    config.optim.warmup_steps, config.train.steps = 10, 100
    spec = model_spec(config)
    model = build_model(spec)
    tx = make_optimizer(config.optim, config.train.steps)
    state = abstract_train_state(spec, config)
    batch_shapes = {"inputs": jax.ShapeDtypeStruct((batch, seq_len), jnp.int32),
                    "targets": jax.ShapeDtypeStruct((batch, seq_len), jnp.int32),
                    "weights": jax.ShapeDtypeStruct((batch, seq_len), jnp.float32)}
    step = make_train_step(model, tx, make_schedule(config.optim, config.train.steps))
    t = time.perf_counter()
    jax.jit(step, donate_argnums=state_donation()).lower(state, batch_shapes).compile()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[12, 48])
    args = parser.parse_args()
    print(f"{'layers':>6} {'scan (s)':>9} {'unrolled (s)':>13}")
    for layers in args.layers:
        print(f"{layers:>6} {compile_seconds(layers, True):>9.1f} "
              f"{compile_seconds(layers, False):>13.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
