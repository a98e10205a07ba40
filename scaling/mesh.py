"""Mesh axes and their sizes, in plain Python: parsing `--mesh` and resolving `parallel.mesh`.

The mesh has three axes:
    data    pure data parallelism (parameters replicated)
    fsdp    data parallelism with parameters and optimizer state sharded (ZeRO-3)
    tensor  Megatron-style tensor parallelism (heads and MLP hidden split)
No JAX here, so commands can size a mesh before a backend starts (scaling.sharding builds it).
"""
from __future__ import annotations

import math

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the global batch is split over both data-parallel axes


def parse_mesh(text: str) -> dict[str, int]:
    """'data=8,tensor=8' -> {'data': 8, 'fsdp': 1, 'tensor': 8} (unnamed axes are 1)."""
    sizes = dict.fromkeys(MESH_AXES, 1)
    for part in filter(None, (p.strip() for p in text.split(","))):
        axis, sep, value = part.partition("=")
        axis = axis.strip()
        if not sep or axis not in MESH_AXES:
            raise ValueError(f"--mesh: {part!r} is not one of {', '.join(MESH_AXES)}=SIZE")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--mesh: {axis} must be a positive size, got {value.strip()!r}")
        sizes[axis] = int(value)
    return sizes


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


def data_parallel(sizes: dict[str, int]) -> int:
    """Devices the global batch is split over (data x fsdp)."""
    return math.prod(sizes[a] for a in BATCH_AXES)


def recipe_micro_batches(parallel_cfg, train_cfg, sizes: dict[str, int]) -> int:
    """train.micro_batches that keeps a recipe's per-device micro-batch on the mesh `sizes`.

    A published recipe (parallel.recipe_devices > 0) lays its global batch out for that
    many devices: batch / (micro_batches x data-parallel devices) sequences per device per
    micro-step. On another mesh the same global batch keeps that per-device micro-batch by
    changing the number of micro-batches; where that does not divide evenly, or without a
    recipe, the config's micro_batches stay.
    """
    devices = int(parallel_cfg.get("recipe_devices", 0))
    micro = int(train_cfg.micro_batches)
    if devices <= 0:
        return micro
    recipe_dp = data_parallel(mesh_shape(parallel_cfg.mesh, devices))
    rows = train_cfg.batch_size // (micro * recipe_dp)     # per device per micro-step
    dp = data_parallel(sizes)
    if rows < 1 or train_cfg.batch_size % (rows * dp):
        return micro
    return train_cfg.batch_size // (rows * dp)
