"""The collectives of a compiled step, read from its HLO text: what, over which mesh axes, how
many bytes, how often.

`parse_collectives(compiled.as_text(), mesh_sizes)` lists every all-reduce, all-gather,
reduce-scatter, all-to-all and collective-permute of the optimized module (an async
`-start`/`-done` pair counts once, at its start), each with:
  - the mesh axes its device groups vary over: replica groups are device positions in the
    mesh's row-major (data, fsdp, tensor) order, so a group {0, 2} on data=2,fsdp=2,tensor=2
    varies only the fsdp coordinate and runs over 'fsdp';
  - `size_bytes`, the size S of the whole buffer the collective acts on, per device: the
    operand of an all-reduce, all-to-all or collective-permute, the *gathered result* of an
    all-gather, the *unscattered input* of a reduce-scatter;
  - `count`, how many times one step runs it: a collective in a while loop's body (the layer
    scan, the micro-batch loop) runs once per trip, and nested loops multiply.
`wire_bytes` turns S into the bytes each device sends per run under the ring algorithm
(the usual convention; Patarasuk & Yuan 2009, NCCL's "bus bandwidth"):
  all-reduce 2(n-1)/n S;  all-gather, reduce-scatter, all-to-all (n-1)/n S;
  collective-permute S times the share of devices that send to another device.
Pure text processing: no JAX here.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import defaultdict

import numpy as np

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

# Bytes per element of the HLO primitive types (sub-byte types rounded up to a byte).
DTYPE_BYTES = {"pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4,
               "u32": 4, "s64": 8, "u64": 8, "f16": 2, "bf16": 2, "f32": 4, "f64": 8,
               "c64": 8, "c128": 16, "token": 0, "f8e4m3fn": 1, "f8e5m2": 1,
               "f8e4m3": 1, "f8e4m3fnuz": 1, "f8e5m2fnuz": 1, "f8e4m3b11fnuz": 1,
               "f8e3m4": 1, "f4e2m1fn": 1, "f8e8m0fnu": 1}

_COMMENT = re.compile(r"/\*.*?\*/")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s+([a-z][a-z0-9\-]*)\((.*)$")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([\d,]*)\]")
_CALLEES = re.compile(r"\b(condition|body|calls|to_apply|branch_computations|"
                      r"true_computation|false_computation)=(\{[^}]*\}|%?[\w.\-]+)")
_TRIP = re.compile(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"?(\d+)"?')
_CONSTANT = re.compile(r"[su](?:32|64)\[\]\s+constant\((\d+)\)")


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective instruction of the compiled step."""
    kind: str                 # one of KINDS
    name: str                 # the HLO instruction's name
    axes: tuple[str, ...]     # mesh axes its groups vary over, in mesh order; () = no traffic
    group_size: int           # devices per group (n)
    size_bytes: int           # S per device (see the module docstring)
    count: int                # runs per step (loop trips multiplied)
    send_share: float = 1.0   # collective-permute: share of devices sending to another one
    in_loop: bool = False     # inside a while loop's body (layer scan, micro-batch loop)

    @property
    def wire_bytes(self) -> float:
        """Bytes one device sends per run (ring algorithm)."""
        return wire_bytes(self.kind, self.size_bytes, self.group_size, self.send_share)

    @property
    def total_bytes(self) -> float:
        """Bytes one device sends for this collective in one step."""
        return self.count * self.wire_bytes


def wire_bytes(kind: str, size_bytes: float, group_size: int, send_share: float = 1.0) -> float:
    """Per-device bytes sent by one ring-algorithm collective on a buffer of size_bytes."""
    n = group_size
    if n <= 1:
        return 0.0
    if kind == "all-reduce":
        return 2 * (n - 1) / n * size_bytes
    if kind in ("all-gather", "reduce-scatter", "all-to-all"):
        return (n - 1) / n * size_bytes
    if kind == "collective-permute":
        return send_share * size_bytes
    raise ValueError(f"unknown collective kind {kind!r}; known: {', '.join(KINDS)}")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string: an array `f32[64,32]{1,0}` or a tuple of them."""
    total = 0
    for dtype, dims in _ARRAY.findall(_COMMENT.sub("", shape)):
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"HLO shape {shape!r}: unknown element type {dtype!r}")
        total += DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
    return total


def _iota(dims: list[int], perm: list[int] | None) -> np.ndarray:
    """XLA's iota tile assignment: arange reshaped to dims, transposed by perm, flattened."""
    ids = np.arange(math.prod(dims)).reshape(dims)
    return (ids.transpose(perm) if perm else ids).reshape(-1)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_replica_groups(attrs: str, num_devices: int) -> list[list[int]]:
    """The device groups of a collective, from its attributes text. Handles the explicit
    `{{0,1},{2,3}}`, the iota `[4,2]<=[2,2,2]T(1,0,2)` and the mesh-axes
    `mesh['axis_0'=2,'axis_1'=4], device_ids=([2,2,2]T(1,0,2)) {'axis_0'}` forms."""
    m = re.search(r"replica_groups=\{((?:\{[\d,\s]*\},?\s*)*)\}", attrs)
    if m:
        groups = [_ints(g) for g in re.findall(r"\{([\d,\s]*)\}", m.group(1))]
        return groups or [list(range(num_devices))]  # {} = all devices in one group
    m = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", attrs)
    if m:
        shape = _ints(m.group(1))
        ids = _iota(_ints(m.group(2)), _ints(m.group(3)) if m.group(3) else None)
        return ids.reshape(shape[0], -1).tolist()
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]"
                  r"(?:,\s*device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))?\s*\{([^}]*)\}", attrs)
    if m:
        names, sizes = [], []
        for part in m.group(1).split(","):
            axis, _, size = part.partition("=")
            if not size.strip().isdigit():
                raise ValueError(f"HLO replica groups: cannot read mesh axis {part!r}")
            names.append(axis.strip().strip("'\""))
            sizes.append(int(size))
        ids = (_iota(_ints(m.group(2)), _ints(m.group(3)) if m.group(3) else None)
               if m.group(2) else np.arange(math.prod(sizes)))
        grid = ids.reshape(sizes)
        over = [a.strip().strip("'\"") for a in m.group(4).split(",") if a.strip()]
        if not set(over) <= set(names):
            raise ValueError(f"HLO replica groups: axes {over} not in mesh {names} "
                             "(sub-axis groups are not supported)")
        moved = [names.index(a) for a in over]
        kept = [i for i in range(len(names)) if i not in moved]
        return grid.transpose(kept + moved).reshape(-1, math.prod(
            sizes[i] for i in moved)).tolist()
    raise ValueError(f"HLO collective: no replica groups this parser reads in {attrs[:120]!r}")


def _coords(device: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(c) for c in np.unravel_index(device, shape))


def group_axes(groups: list[list[int]], mesh_sizes: dict[str, int]) -> tuple[str, ...]:
    """Mesh axes whose coordinate varies within some group (mesh order)."""
    names, shape = list(mesh_sizes), tuple(mesh_sizes.values())
    varying = set()
    for group in groups:
        coords = [_coords(d, shape) for d in group]
        for i in range(len(names)):
            if len({c[i] for c in coords}) > 1:
                varying.add(i)
    return tuple(names[i] for i in sorted(varying))


def _pairs_axes(pairs: list[tuple[int, int]], mesh_sizes: dict[str, int]):
    names, shape = list(mesh_sizes), tuple(mesh_sizes.values())
    varying, moving = set(), 0
    for src, dst in pairs:
        a, b = _coords(src, shape), _coords(dst, shape)
        varying |= {i for i in range(len(names)) if a[i] != b[i]}
        moving += a != b
    return tuple(names[i] for i in sorted(varying)), moving / max(len(pairs), 1)


def _split_operands(rest: str) -> tuple[list[str], str]:
    """'%a, %b), attrs' -> (['%a', '%b'], 'attrs') (parentheses balanced)."""
    depth = 1
    for i, ch in enumerate(rest):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return [o.strip() for o in rest[:i].split(",") if o.strip()], rest[i + 1:]
    return [o.strip() for o in rest.split(",")], ""


@dataclasses.dataclass
class _Instr:
    name: str
    shape: str
    opcode: str
    operands: list[str]
    attrs: str


def _parse_module(hlo: str):
    """{computation: [instructions]}, the entry computation's name, {name: shape}."""
    comps: dict[str, list[_Instr]] = {}
    shapes: dict[str, str] = {}
    entry, current = None, None
    for raw in hlo.splitlines():
        line = _COMMENT.sub("", raw)
        if current is None:
            m = _HEADER.match(line)
            if m and not line.startswith((" ", "\t")) and not line.startswith("HloModule"):
                current = m.group(2)
                comps[current] = []
                if m.group(1):
                    entry = current
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTR.match(line)
        if m:
            name, shape, opcode, rest = m.groups()
            operands, attrs = _split_operands(rest)
            comps[current].append(_Instr(name, shape, opcode, operands, attrs))
            shapes[name] = shape
    if entry is None:
        raise ValueError("HLO text: no ENTRY computation (pass compiled.as_text())")
    return comps, entry, shapes


def _trip_count(instr: _Instr, comps) -> int | None:
    m = _TRIP.search(instr.attrs)
    if m:
        return int(m.group(1))
    cond = re.search(r"condition=%?([\w.\-]+)", instr.attrs)
    if cond and cond.group(1) in comps:
        # No backend_config: a counter from 0 compared with the condition's one constant.
        constants = {int(c) for i in comps[cond.group(1)]
                     for c in _CONSTANT.findall(f"{i.shape} {i.opcode}({','.join(i.operands)})")}
        if len(constants) == 1:
            return constants.pop()
    return None


def computation_counts(comps, entry) -> tuple[dict[str, int], list[str], set[str]]:
    """How many times one run of `entry` runs each computation; the while loops of unknown
    trip count (counted once); the computations reached through a loop body."""
    counts: dict[str, int] = defaultdict(int)
    unknown: list[str] = []
    looped: set[str] = set()

    def visit(comp: str, times: int, stack: tuple[str, ...], in_loop: bool = False):
        counts[comp] += times
        if in_loop:
            looped.add(comp)
        for instr in comps.get(comp, ()):
            trips = None
            if instr.opcode == "while":
                trips = _trip_count(instr, comps)
                if trips is None:
                    unknown.append(instr.name)
            for key, value in _CALLEES.findall(instr.attrs):
                if key == "to_apply":
                    continue  # reducers and mapped scalars: no collectives inside
                for callee in re.findall(r"[\w.\-]+", value):
                    if callee in comps and callee not in stack:
                        factor = (trips or 1) if key in ("body", "condition") else 1
                        visit(callee, times * factor, stack + (callee,),
                              in_loop or key == "body")

    visit(entry, 1, (entry,))
    return dict(counts), unknown, looped


def _kind(opcode: str) -> str | None:
    base = opcode[:-len("-start")] if opcode.endswith("-start") else opcode
    return base if base in KINDS else None


def parse_collectives(hlo: str, mesh_sizes: dict[str, int]) -> list[Collective]:
    """Every collective of an optimized HLO module (compiled.as_text()), in text order.

    Args:
      hlo: the module's text.
      mesh_sizes: {axis: size} in the mesh's axis order (data, fsdp, tensor); device ids in
        the HLO are positions in that row-major mesh.
    Returns:
      a list of Collective; loops without a known trip count are counted once.
    """
    comps, entry, shapes = _parse_module(hlo)
    counts, _, looped = computation_counts(comps, entry)
    n_devices = math.prod(mesh_sizes.values())
    found = []
    for comp, instrs in comps.items():
        if counts.get(comp, 0) == 0:
            continue
        for instr in instrs:
            kind = _kind(instr.opcode)
            if kind is None:
                continue
            operand_bytes = sum(shape_bytes(shapes[o.lstrip("%")]) if o.lstrip("%") in shapes
                                else shape_bytes(o) for o in instr.operands)
            share = 1.0
            if kind == "collective-permute":
                pairs = [tuple(_ints(p)) for p in re.findall(
                    r"\{(\d+,\d+)\}", _attr(instr.attrs, "source_target_pairs"))]
                axes, share = _pairs_axes(pairs, mesh_sizes)
                n = 2 if axes else 1
            else:
                groups = parse_replica_groups(instr.attrs, n_devices)
                axes, n = group_axes(groups, mesh_sizes), len(groups[0])
            size = operand_bytes * n if kind == "all-gather" else operand_bytes
            found.append(Collective(kind, instr.name, axes, n, size, counts[comp], share,
                                    comp in looped))
    return found


def _attr(attrs: str, key: str) -> str:
    i = attrs.find(key + "=")
    if i < 0:
        return ""
    depth, j = 0, i + len(key) + 1
    for k in range(j, len(attrs)):
        depth += {"{": 1, "}": -1}.get(attrs[k], 0)
        if depth == 0:
            return attrs[j:k + 1]
    return attrs[j:]


def axes_label(axes: tuple[str, ...]) -> str:
    """('data', 'fsdp') -> 'data+fsdp'; () -> '-'."""
    return "+".join(axes) or "-"


def totals(collectives: list[Collective], in_loop: bool | None = None) -> dict:
    """Per-device bytes sent per step (ring convention), by axes label and by kind;
    in_loop=True/False keeps only the collectives inside / outside while loops."""
    collectives = [c for c in collectives if in_loop is None or c.in_loop == in_loop]
    by_axes: dict[str, float] = defaultdict(float)
    by_kind: dict[str, float] = defaultdict(float)
    for c in collectives:
        by_axes[axes_label(c.axes)] += c.total_bytes
        by_kind[c.kind] += c.total_bytes
    return {"by_axes": dict(by_axes), "by_kind": dict(by_kind),
            "total": sum(c.total_bytes for c in collectives)}


def summarize(collectives: list[Collective]) -> list[dict]:
    """Rows (kind, axes, size_bytes, count, total_bytes) merging identical collectives."""
    rows: dict[tuple, dict] = {}
    for c in collectives:
        key = (c.kind, axes_label(c.axes), c.size_bytes, c.group_size)
        row = rows.setdefault(key, {"kind": c.kind, "axes": key[1], "group_size": c.group_size,
                                    "size_bytes": c.size_bytes, "count": 0,
                                    "total_bytes": 0.0})
        row["count"] += c.count
        row["total_bytes"] += c.total_bytes
    return sorted(rows.values(), key=lambda r: -r["total_bytes"])


def report(hlo: str, mesh_sizes: dict[str, int]) -> dict:
    """JSON-ready: the merged table, the totals and the convention, for `scaling compile`."""
    found = parse_collectives(hlo, mesh_sizes)
    comps, entry, _ = _parse_module(hlo)
    _, unknown, _ = computation_counts(comps, entry)
    out = {"table": summarize(found), "totals": totals(found),
           "convention": "bytes each device sends per step, ring algorithm: all-reduce "
                         "2(n-1)/n S, all-gather/reduce-scatter (n-1)/n S; S = the full "
                         "(gathered / unscattered) buffer"}
    if unknown:
        out["loops_counted_once"] = unknown
    return json.loads(json.dumps(out))
