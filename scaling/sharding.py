"""Mesh and shardings: logical axis names (on every parameter) -> mesh axes, by one table.

The mesh axes (data, fsdp, tensor) are described in scaling.mesh. Model code only names
logical axes (scaling.nn.logical.LOGICAL_AXES); this file alone maps them to the mesh.

Layouts (config.parallel.mesh; one size may be -1 = the rest of the devices):
    data=8                   pure data parallel: parameters replicated, batch split 8 ways
    fsdp=8                   ZeRO-3: every parameter and its AdamW moments split along `embed`
    tensor=8                 Megatron: heads and MLP hidden (and vocab rows) split 8 ways
    data=2,fsdp=2,tensor=2   all three at once

A parameter dimension that a mapped mesh axis does not divide (GPT-2's 50,257-row vocabulary
over tensor=2, say) is left unsplit along that axis rather than rejected: the layout still
compiles and the rest of the array is still sharded. `param_shardings` reports each such
fallback so run() and `scaling compile` can print it. Heads and MLP hidden must divide by
`tensor` (check_divisibility), because an unsplit attention layer would silently undo tensor
parallelism.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling.mesh import BATCH_AXES, MESH_AXES, mesh_shape
from scaling.nn.logical import LOGICAL_AXES, fit_spec
from scaling.train_state import TrainState, make_init_fn, traceable_batch

# Logical name -> mesh axis (or axes, or None = replicated). Flax assigns each mesh axis at
# most once per array, so `embed -> fsdp` does not clash with `batch -> (data, fsdp)` on
# activations: the batch takes fsdp first and embed is left unsharded there.
RULES = {
    "default": (
        ("batch", BATCH_AXES),
        ("embed", "fsdp"),
        ("heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
        ("length", None),
        ("head_dim", None),
        ("positions", None),
        ("types", None),
        ("layers", None),
        ("labels", None),
        # Convolutions split like dense layers: input channels stored over fsdp (as embed),
        # output channels over tensor (as mlp); the small window is never split.
        ("conv_in", "fsdp"),
        ("conv_out", "tensor"),
        ("conv_rows", None),
        ("conv_cols", None),
    ),
}


def parse_rules(text: str):
    """`parallel.rules` -> a rules table: a table name, optionally followed by overrides.

    Examples: "default"; "default,vocab=none" (replicate the vocabulary);
    "embed=none,batch=data+fsdp" (overrides on top of the default table). `none` means
    replicated; `a+b` maps one logical axis to two mesh axes.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    name = "default"
    if parts and "=" not in parts[0]:
        name = parts.pop(0)
    if name not in RULES:
        raise ValueError(f"parallel.rules: unknown table {name!r}; allowed: "
                         + ", ".join(repr(r) for r in RULES))
    table = dict(RULES[name])
    for part in parts:
        logical, sep, target = (s.strip() for s in part.partition("="))
        if not sep or not logical:
            raise ValueError(f"parallel.rules: {part!r} is not logical=mesh_axis")
        axes = tuple(a.strip() for a in target.split("+") if a.strip())
        if axes in ((), ("none",), ("None",)):
            table[logical] = None
        else:
            table[logical] = axes[0] if len(axes) == 1 else axes
    return tuple(table.items())


def logical_rules(name: str = "default"):
    """The rules table of `parallel.rules`, checked against the logical and the mesh axes."""
    rules = parse_rules(name)
    for logical, mesh_axes in rules:
        if logical not in LOGICAL_AXES:
            raise ValueError(f"parallel.rules: unknown logical axis {logical!r} in "
                             f"{name!r}; logical axes: {', '.join(LOGICAL_AXES)}")
        for axis in (mesh_axes if isinstance(mesh_axes, tuple) else (mesh_axes,)):
            if axis is not None and axis not in MESH_AXES:
                raise ValueError(f"parallel.rules: unknown mesh axis {axis!r} for "
                                 f"{logical!r}; mesh axes: {', '.join(MESH_AXES)}")
    return rules


def job_devices(num_devices: int = 0, engine: str = "jit") -> list:
    """The devices a run uses: all of the job's, or its first `num_devices` (one process)."""
    available = jax.devices()
    if num_devices == 0:
        return available
    if not 0 < num_devices <= len(available):
        raise ValueError(f"parallel.num_devices: {num_devices} is not in [1, "
                         f"{len(available)}] (0 = all devices)")
    if jax.process_count() > 1 or engine != "jit":
        raise ValueError("parallel.num_devices: selecting devices works with one process and "
                         "parallel.engine=jit; set it to 0")
    return available[:num_devices]


def make_mesh(mesh_cfg, devices=None) -> jax.sharding.Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of the job).

    Axis types are Auto so that GSPMD propagates shardings from the logical constraints
    (jax.make_mesh defaults to Explicit axes, which reject sharded contractions).
    """
    devices = jax.devices() if devices is None else devices
    sizes = mesh_shape(mesh_cfg, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    try:
        device_array = mesh_utils.create_device_mesh(shape, devices)
    except (AssertionError, ValueError, NotImplementedError):
        device_array = np.asarray(devices).reshape(shape)
    return jax.sharding.Mesh(device_array, MESH_AXES,
                             axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def param_specs(boxed_params, mesh, rules):
    """PartitionSpecs of a tree of LogicallyPartitioned (boxed, possibly abstract) parameters.

    Returns (specs, fallbacks): specs is a tree of PartitionSpec (one entry per dimension,
    size-1 mesh axes removed, so pure data parallel gives P(None, ...) everywhere);
    fallbacks maps "path/to/param" -> notes for dimensions left unsplit (see fit_spec).
    """
    logical = nn.get_partition_spec(boxed_params)
    mesh_specs = nn.logical_to_mesh(logical, rules)
    # Not nn.unbox: under a mesh it would apply sharding constraints to abstract values.
    boxed = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    shapes = jax.tree.map(lambda x: (x.unbox(apply_constraint=False) if boxed(x) else x).shape,
                          boxed_params, is_leaf=boxed)
    fallbacks = {}

    def fit(path, spec, shape):
        fitted, notes = fit_spec(spec, shape, mesh)
        if notes:
            fallbacks["/".join(str(getattr(k, "key", k)) for k in path)] = notes
        return fitted

    # Each spec leaf lines up with a shape tuple, which is passed whole.
    specs = jax.tree_util.tree_map_with_path(fit, mesh_specs, shapes,
                                             is_leaf=lambda x: isinstance(x, P))
    return specs, fallbacks


def param_shardings(boxed_params, mesh, rules):
    """NamedShardings for a tree of LogicallyPartitioned (boxed) parameters."""
    specs, _ = param_specs(boxed_params, mesh, rules)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, P))


def opt_state_shardings(tx, abstract_opt_state, params_sharding, mesh):
    """Optimizer state leaves shaped like parameters get the parameter's sharding."""
    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(tx, lambda _, s: s, abstract_opt_state, params_sharding,
                                 transform_non_params=lambda _: replicated)


@dataclasses.dataclass
class StateLayout:
    """Everything needed to create a sharded TrainState, or to compile against one.

    init_fn(rng) -> TrainState builds the state; jit it with out_shardings=shardings to
    create every parameter and optimizer moment directly on its devices (nothing is built
    whole on one device first). `abstract` holds ShapeDtypeStructs carrying the shardings,
    for ahead-of-time lowering without any parameter memory.
    """
    init_fn: Callable
    abstract: Any            # TrainState of ShapeDtypeStruct(shape, dtype, sharding=...)
    shardings: Any           # TrainState of NamedSharding
    param_shardings: Any     # params tree of NamedSharding
    fallbacks: dict          # "param/path" -> notes of dimensions left unsplit

    def create(self, rng):
        """The real state, created sharded (jit of init_fn with out_shardings)."""
        return jax.jit(self.init_fn, out_shardings=self.shardings)(rng)


def train_state_layout(model, tx, init_batch, rng, mesh, rules) -> StateLayout:
    """Shapes and shardings of the TrainState of `model` + `tx`, by jax.eval_shape only.

    Args:
      model: the Linen model; its params carry logical axis names.
      tx: the optax transformation (its state leaves shaped like params follow them).
      init_batch: a batch (arrays or ShapeDtypeStructs) to initialise the model with.
      rng: the PRNG key of the run (train.seed).
      mesh, rules: from make_mesh and logical_rules.
    """
    init_fn = make_init_fn(model, tx, init_batch)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda r: model.init(r, traceable_batch(init_batch))["params"],
                               rng)
        specs, fallbacks = param_specs(boxed, mesh, rules)
        params_sh = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                                 is_leaf=lambda x: isinstance(x, P))
        shapes = jax.eval_shape(init_fn, rng)
    shardings = TrainState(
        step=replicated(mesh), params=params_sh,
        opt_state=opt_state_shardings(tx, shapes.opt_state, params_sh, mesh),
        rng=replicated(mesh))
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            shapes, shardings)
    return StateLayout(init_fn, abstract, shardings, params_sh, fallbacks)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
    """Batches are split along their first axis over (data, fsdp)."""
    return NamedSharding(mesh, P(BATCH_AXES))


def check_divisibility(spec, mesh, global_batch: int, micro_batches: int = 1) -> None:
    """One-line errors for layouts the model cannot take, raised before compiling."""
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    tp = mesh.shape["tensor"]
    per_micro = global_batch // max(micro_batches, 1)
    if global_batch % micro_batches:
        raise ValueError(f"train.batch_size: {global_batch} is not divisible by "
                         f"train.micro_batches={micro_batches}")
    if per_micro % dp:
        raise ValueError(f"train.batch_size: the micro-batch of {per_micro} sequences is not "
                         f"divisible by the data-parallel size data*fsdp={dp}")
    if spec.num_heads % tp:
        raise ValueError(f"parallel.mesh.tensor: model.num_heads={spec.num_heads} is not "
                         f"divisible by tensor={tp}")
    if spec.mlp_dim % tp:
        raise ValueError(f"parallel.mesh.tensor: model.mlp_dim={spec.mlp_dim} is not "
                         f"divisible by tensor={tp}")
