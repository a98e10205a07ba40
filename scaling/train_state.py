"""The train state: everything a step reads and writes, as one pytree."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array       # int32 scalar: updates applied so far
    params: Any           # float32 master weights
    opt_state: Any        # optax state (AdamW moments, schedule count)
    rng: jax.Array        # base key; step keys are fold_in(rng, step)


def traceable_batch(batch):
    """The batch with every ShapeDtypeStruct as zeros of its shape, for use inside a traced
    function (eval_shape, jit): nothing is allocated there, and modules that call array
    methods on their inputs (the captioner's convolutions: .astype) can trace it."""
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype)
                        if isinstance(x, jax.ShapeDtypeStruct) else x, batch)


def make_init_fn(model, tx, init_batch):
    """`init(rng) -> TrainState`: fresh parameters, optimizer state, step 0.

    The one definition of a new state: run() jits it with output shardings, and
    `jax.eval_shape` of it gives the abstract state for checkpoints and AOT compiles.
    """
    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        params = nn.unbox(model.init(init_rng, traceable_batch(init_batch))["params"])
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), rng=state_rng)
    return init
