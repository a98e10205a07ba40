"""Mesh and shardings: logical axis names (on every parameter) -> mesh axes, by one table.

The mesh has three axes:
    data    pure data parallelism (parameters replicated)
    fsdp    data parallelism with parameters and optimizer state sharded (ZeRO-3)
    tensor  Megatron-style tensor parallelism (heads and MLP hidden split)
Model code only names logical axes (scaling.nn.layers.LOGICAL_AXES); this file alone knows
the mesh.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling.nn.layers import LOGICAL_AXES

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the global batch is split over both data-parallel axes

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
    ),
}


def logical_rules(name: str = "default"):
    """The named rules table, checked against the model's logical and the mesh's axes."""
    if name not in RULES:
        raise ValueError(f"parallel.rules: unknown table {name!r}; allowed: "
                         + ", ".join(repr(r) for r in RULES))
    rules = RULES[name]
    for logical, mesh_axes in rules:
        if logical not in LOGICAL_AXES:
            raise ValueError(f"parallel.rules: unknown logical axis {logical!r} in table "
                             f"{name!r}; logical axes: {', '.join(LOGICAL_AXES)}")
        for axis in (mesh_axes if isinstance(mesh_axes, tuple) else (mesh_axes,)):
            if axis is not None and axis not in MESH_AXES:
                raise ValueError(f"parallel.rules: unknown mesh axis {axis!r} for "
                                 f"{logical!r}; mesh axes: {', '.join(MESH_AXES)}")
    return rules


def mesh_shape(mesh_cfg, num_devices: int) -> dict[str, int]:
    """Resolve the config's {data, fsdp, tensor} sizes (one may be -1) for num_devices."""
    sizes = {axis: int(mesh_cfg.get(axis, 1)) for axis in MESH_AXES}
    unknown = set(mesh_cfg.keys()) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"parallel.mesh: unknown axis {sorted(unknown)[0]!r}; axes: "
                         + ", ".join(MESH_AXES))
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1:
        raise ValueError(f"parallel.mesh: only one axis may be -1, got {', '.join(free)}")
    for axis, size in sizes.items():
        if size == 0 or size < -1:
            raise ValueError(f"parallel.mesh.{axis}: must be a positive size or -1, got {size}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"parallel.mesh: the fixed axes ({fixed} devices) do not divide "
                             f"the {num_devices} devices")
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(f"parallel.mesh: data*fsdp*tensor = {math.prod(sizes.values())} but "
                         f"there are {num_devices} devices; make the product equal the device "
                         "count or set one axis to -1")
    return sizes


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


def param_shardings(boxed_params, mesh, rules):
    """NamedShardings for a tree of LogicallyPartitioned (boxed) parameters."""
    specs = nn.get_partition_spec(boxed_params)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def opt_state_shardings(tx, abstract_opt_state, params_sharding, mesh):
    """Optimizer state leaves shaped like parameters get the parameter's sharding."""
    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(tx, lambda _, s: s, abstract_opt_state, params_sharding,
                                 transform_non_params=lambda _: replicated)


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
