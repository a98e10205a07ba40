"""`compile_step`: the train step jitted with its shardings and donation, then compiled.

The one place that wires `jax.jit` for the train step, so the step that `scaling compile`
and the benchmarks measure is the step that `scaling train` runs.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import flax.linen as nn
import jax

from scaling.sharding import StateLayout, batch_sharding
from scaling.train_step import make_train_step, state_donation


@dataclasses.dataclass
class CompiledStep:
    """A compiled `train_step(state, batch) -> (state, metrics)` and what it took to build."""
    fn: jax.stages.Compiled   # call as fn(state, batch); cost and memory analyses on it
    lower_s: float            # seconds to trace and lower
    compile_s: float          # seconds for XLA to compile


def compile_step(model, tx, schedule, train_cfg, layout: StateLayout, mesh, rules,
                 batch, state: Any = None, loss: str = "cross_entropy",
                 donate: bool | None = None) -> CompiledStep:
    """Lower and compile the train step for `mesh`: state in and out with its shardings,
    the batch split over the data-parallel axes, the state's buffers donated.

    Args:
      model, tx, schedule: the Linen model, the optax transformation and its schedule.
      train_cfg: the config's `train` section (reads micro_batches and nonfinite).
      layout: sharding.train_state_layout's StateLayout of model + tx on `mesh`.
      mesh, rules: from sharding.make_mesh and sharding.logical_rules.
      batch: one global batch (arrays, or ShapeDtypeStructs from scaling.batch_spec).
      state: the state to lower against (default: layout.abstract, nothing allocated).
      loss: a scaling.train_step.LOSSES name.
      donate: donate the state's buffers; None = as training does on this platform
        (scaling.train_step.state_donation).
    """
    step = make_train_step(model, tx, schedule, train_cfg.micro_batches, train_cfg.nonfinite,
                           loss=loss)
    donation = state_donation() if donate is None else ((0,) if donate else ())
    t0 = time.perf_counter()
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        jitted = jax.jit(step, in_shardings=(layout.shardings, batch_sharding(mesh)),
                         out_shardings=(layout.shardings, None), donate_argnums=donation)
        lowered = jitted.lower(layout.abstract if state is None else state, batch)
        t1 = time.perf_counter()
        compiled = lowered.compile()
    return CompiledStep(compiled, t1 - t0, time.perf_counter() - t1)
