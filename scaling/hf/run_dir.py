"""Run directories as `scaling train` writes them, for converted weights.

An imported model becomes a run directory at step 0: `config.json` (the resolved run
config) and `checkpoints/0/` (a TrainState with the converted parameters, a fresh AdamW
state and no data position), so `checkpoint.init_from`, `scaling sample` and resuming in
the directory itself all read it like any trained run.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from scaling import checkpoint as ckpt_lib, storage
from scaling.hf.errors import HFError


def check_new_workdir(workdir: str) -> None:
    """HFError unless `workdir` can become a fresh run directory (nothing is created)."""
    try:
        ckpt_lib.check_workdir(workdir)
    except ckpt_lib.CheckpointError as e:
        raise HFError(str(e)) from None
    if ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(workdir)):
        raise HFError(f"--workdir: {workdir!r} already has checkpoints; give a new directory")
    if storage.exists(storage.join(workdir, "config.json")):
        raise HFError(f"--workdir: {workdir!r} already holds a run (config.json); give a new "
                      "directory")


def write_run(workdir: str, config, spec, params) -> str:
    """Write config.json and checkpoints/0 for `params` (a numpy tree); returns the step dir."""
    from scaling.optim import make_optimizer  # noqa: PLC0415
    from scaling.train_state import TrainState  # noqa: PLC0415

    resolved = ckpt_lib.resolved_config(config, spec)
    storage.write_text_atomic(storage.join(workdir, "config.json"),
                              json.dumps(resolved, indent=1))
    params = jax.tree.map(jnp.asarray, params)
    tx = make_optimizer(config.optim, config.train.steps)
    # As scaling.train_state.make_init_fn: the state keeps the second half of the split.
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.split(jax.random.PRNGKey(config.train.seed))[1])
    ckpt_cfg = ml_collections.ConfigDict(config.checkpoint.to_dict())
    ckpt_cfg.async_save = False
    checkpoints = ckpt_lib.Checkpoints(workdir, ckpt_cfg, resolved)
    # No data position: a run resuming here starts its data from the beginning.
    checkpoints.save(0, state, None)
    checkpoints.wait()
    checkpoints.close()
    return storage.join(checkpoints.directory, "0")


def read_run(workdir: str):
    """(config, spec) of a run directory, from its config.json."""
    from scaling.models import model_spec  # noqa: PLC0415

    path = storage.join(workdir, "config.json")
    if not storage.path(path).is_file():
        raise HFError(f"--workdir: no config.json in {workdir!r}; is it a run directory?")
    config = ml_collections.ConfigDict(json.loads(storage.read_text(path)))
    try:
        spec = model_spec(config)
    except ValueError as e:
        raise HFError(str(e).splitlines()[0]) from None
    return config, spec


def load_params(workdir: str, config, spec, step: int | None = None):
    """(params as a numpy tree, step) from the run's checkpoint (default: the latest)."""
    steps = ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(workdir))
    if step is not None and step not in steps:
        raise HFError(f"--step: no checkpoint of step {step} in {workdir!r} (steps: "
                      f"{', '.join(map(str, steps)) or 'none'})")
    try:
        state, _, step = ckpt_lib.load(workdir, ckpt_lib.abstract_train_state(spec, config),
                                       step)
    except FileNotFoundError as e:
        raise HFError(f"--workdir: {e}") from None
    return jax.tree.map(np.asarray, state.params), step
