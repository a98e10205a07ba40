"""The train state: everything a step reads and writes, as one pytree."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
    step: jax.Array       # int32 scalar: updates applied so far
    params: Any           # float32 master weights
    opt_state: Any        # optax state (AdamW moments, schedule count)
    rng: jax.Array        # base key; step keys are fold_in(rng, step)
