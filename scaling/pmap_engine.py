"""The `jax.pmap` engine (`--config.parallel.engine=pmap`): classic data parallelism.

Every local device holds a full copy of the parameters and optimizer state (a leading axis
of size `jax.local_device_count()`); each gets its own slice of this host's batch rows; the
step sums token-weighted losses and gradients over the `batch` axis with `lax.psum` (on
several hosts the axis spans every device of the job) and each copy applies the same update.
The step counter and PRNG key stay unreplicated scalars (`in_axes=None`, `out_axes=None`),
so `int(state.step)` and the metrics read the same as on the jit path.

It shares everything else with the jit engine: the same `train_step` function (with
`axis_name`), the same initial state (created by run() on a data-parallel mesh, then copied
to each device) and the same batches, so both give the same losses and parameters.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling.train_state import TrainState
from scaling.train_step import make_eval_step, make_train_step, param_norm, state_donation

AXIS = "batch"
# in_axes / out_axes of the state: params and optimizer state are per-device copies.
STATE_AXES = TrainState(step=None, params=0, opt_state=0, rng=None)


def _local_mesh():
    return jax.sharding.Mesh(np.asarray(jax.local_devices()), (AXIS,))


def replicate(state: TrainState) -> TrainState:
    """A (sharded or single-device) state -> pmap layout: params/opt_state copied per device."""
    n = jax.local_device_count()
    stacked = NamedSharding(_local_mesh(), P(AXIS))

    def copy(x):
        # run() creates the state on a pure data-parallel mesh, so every leaf is replicated
        # and this host's first shard is the whole array (no cross-host gather needed).
        local = np.asarray(x.addressable_data(0) if x.is_fully_replicated else jax.device_get(x))
        return jax.device_put(np.broadcast_to(local, (n, *local.shape)), stacked)

    host = lambda x: np.asarray(jax.device_get(x))  # noqa: E731
    return TrainState(step=host(state.step), params=jax.tree.map(copy, state.params),
                      opt_state=jax.tree.map(copy, state.opt_state), rng=host(state.rng))


def unreplicate(state: TrainState) -> TrainState:
    """The pmap layout -> one host copy of the state (numpy), e.g. to save or compare."""
    # This host's first device copy (x[0] would gather across hosts on a multi-host job).
    first = lambda x: np.asarray(x.addressable_shards[0].data)[0]  # noqa: E731
    return TrainState(step=np.asarray(jax.device_get(state.step)),
                      params=jax.tree.map(first, state.params),
                      opt_state=jax.tree.map(first, state.opt_state),
                      rng=np.asarray(jax.device_get(state.rng)))


def split_batch(local_batch: dict) -> dict:
    """This host's rows [b, ...] -> per-device arrays [n_local, b / n_local, ...]."""
    n = jax.local_device_count()
    sharding = NamedSharding(_local_mesh(), P(AXIS))
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        if value.shape[0] % n:
            raise ValueError(f"train.batch_size: this host's {value.shape[0]} rows are not "
                             f"divisible by its {n} devices (parallel.engine=pmap)")
        out[key] = jax.device_put(value.reshape(n, value.shape[0] // n, *value.shape[1:]),
                                  sharding)
    return out


def make_step(model, tx, schedule, micro_batches: int = 1, nonfinite: str = "skip"):
    """pmap'd `step(state, batch) -> (state, metrics)`; metrics are unreplicated scalars."""
    step = make_train_step(model, tx, schedule, micro_batches, nonfinite, axis_name=AXIS)
    return jax.pmap(step, axis_name=AXIS, in_axes=(STATE_AXES, 0),
                    out_axes=(STATE_AXES, None), donate_argnums=state_donation())


def make_param_norm():
    """pmap'd `param_norm(params)` on the per-device copies: one unreplicated scalar."""
    # The copies are equal; pmean makes the result unmapped, so out_axes=None may return it.
    return _outside_run_mesh(jax.pmap(lambda params: jax.lax.pmean(param_norm(params), AXIS),
                                      axis_name=AXIS, out_axes=None))


def make_eval(model, token_bytes=None):
    """pmap'd `eval(params, batch) -> {loss_sum, correct, weight[, bytes]}` summed over all
    devices (see train_step.make_eval_step)."""
    eval_step = make_eval_step(model, token_bytes=token_bytes)

    def summed(params, batch):
        return jax.lax.psum(eval_step(params, batch), AXIS)

    return _outside_run_mesh(jax.pmap(summed, axis_name=AXIS, in_axes=(0, 0), out_axes=None))


def _outside_run_mesh(pmapped):
    """`pmapped`, called outside run()'s jax.set_mesh(mesh) and logical rules: pmap brings
    its own device mesh, and the model's logical constraints are no-ops under it."""

    def call(*args):
        with jax.set_mesh(None), nn.logical_axis_rules(()):
            return pmapped(*args)

    return call
