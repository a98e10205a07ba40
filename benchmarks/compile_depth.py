"""Compile time of the train step against depth, scanned vs unrolled layers.

    python benchmarks/compile_depth.py --layers 12 48

Lowers and compiles the train step that run() runs (scaling.compile_step; GPT-2 small width,
T=128, batch 4, one CPU device) from abstract shapes; prints seconds per compile. With
scan_layers the layer body is compiled once, so compile time should stay flat in depth.
"""
from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from scaling import sharding
from scaling.batch_spec import batch_spec
from scaling.compile_step import compile_step
from scaling.config_loading import load
from scaling.models import build_model, example_batch, model_spec
from scaling.optim import make_optimizer, make_schedule


def compile_seconds(layers: int, scan: bool, seq_len: int = 128, batch: int = 4) -> float:
    config = load("experiments/gpt2.py:small")
    config.model.update(num_layers=layers, scan_layers=scan)
    config.optim.warmup_steps, config.train.steps = 10, 100
    spec = model_spec(config)
    model = build_model(spec)
    tx = make_optimizer(config.optim, config.train.steps)
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    rules = sharding.logical_rules(config.parallel.rules)
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32)  # a PRNGKey's shape: nothing allocated
    layout = sharding.train_state_layout(model, tx, example_batch(spec, 1, seq_len, abstract=True),
                                         rng, mesh, rules)
    batch_shapes = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype)
                    in batch_spec("causal_lm", batch, seq_len).items()}
    step = compile_step(model, tx, make_schedule(config.optim, config.train.steps),
                        config.train, layout, mesh, rules, batch_shapes)
    return step.lower_s + step.compile_s


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
