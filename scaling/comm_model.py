"""Analytic communication of one train step: the collectives DP, FSDP and Megatron TP need.

Per device, per step, for a mesh (data, fsdp, tensor) and the parameters as the rules shard
them (each parameter's PartitionSpec):
  DP    every gradient is all-reduced over the batch axes (data, and fsdp when the parameter
        is not sharded on fsdp).
  FSDP  a parameter sharded on fsdp is all-gathered (over fsdp) before its forward use and
        again in the backward pass; its gradient is reduce-scattered over fsdp, and the
        shard then all-reduced over data. Layer (scanned) parameters are gathered twice per
        micro-batch; the others once, since nothing ends their gathered copy's life between
        the forward and the backward use. Biases are gathered forward only.
  Micro-batches: the gathers and the activation terms run once per micro-batch, and so do
        the gradient reductions (the step's accumulator is sharded like the parameters, so
        GSPMD reduces every micro-batch's gradient: micro_batches times the bytes of one).
  TP    Megatron layout: per block, one all-reduce of the (B, T, D) activations after the
        attention output and one after the MLP output forward, and two for the input
        gradients backward (Shoeybi et al. 2019, fig. 4: f and g). A vocabulary split on
        tensor adds one forward all-reduce of the embeddings and one backward of the logits'
        input gradient (plus scalars per token for the softmax, not counted). BERT's MLM
        head transform, split like an MLP's first layer, adds a forward all-gather and a
        backward all-reduce of the activations.
Sizes S follow scaling.collectives (the gathered / unscattered buffer), so both can be
totalled with the same ring convention (collectives.wire_bytes).

`xla_cpu=True` gives what XLA's CPU compiler emits for the same program, which differs from
the textbook model in two systematic ways:
  - no reduce-scatter: the CPU pipeline has no pass that turns all-reduce + dynamic-slice
    into a reduce-scatter, so the FSDP gradient is all-reduced whole (twice the ring bytes);
  - attention's backward reduces the input gradient of q, k and v separately (three
    all-reduces combined into one tuple, not one of their sum): 4 backward all-reduces per
    block instead of 2.
"""
from __future__ import annotations

import dataclasses
import math

from scaling.collectives import axes_label, wire_bytes

BATCH_AXES = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: global shape, bytes per element, mesh axes per dimension, and the
    number of stacked (scanned) layers in its leading dimension (0 = not stacked)."""
    path: str
    shape: tuple[int, ...]
    itemsize: int
    spec: tuple            # per dimension: None, an axis name, or a tuple of axis names
    layers: int = 0


@dataclasses.dataclass(frozen=True)
class Term:
    """One expected collective (summed over its runs)."""
    what: str
    kind: str
    axes: tuple[str, ...]
    group_size: int
    size_bytes: float
    count: int
    in_layers: bool = False  # runs inside the layer scan (per layer)

    @property
    def total_bytes(self) -> float:
        return self.count * wire_bytes(self.kind, self.size_bytes, self.group_size)


@dataclasses.dataclass(frozen=True)
class StepShape:
    """What the activation collectives depend on."""
    rows_per_device: int     # sequences per data-parallel rank per micro-batch
    seq_len: int             # tokens per sequence through the blocks
    width: int               # D
    blocks: int              # transformer blocks (all stacks)
    act_bytes: int           # bytes per activation element (the compute dtype)
    micro_batches: int = 1
    vocab_parallel: bool = False  # the embedding's vocabulary rows split on tensor
    tied_embedding: str = ""      # path of an embedding also used as the output layer
    split_head_transform: bool = False  # BERT's MLM-head dense layer, its output on tensor


def _axes(spec) -> list[str]:
    out = []
    for entry in spec:
        out += [entry] if isinstance(entry, str) else list(entry or ())
    return out


def parameter_terms(params: list[Param], mesh: dict[str, int], micro_batches: int = 1,
                    xla_cpu: bool = False, tied_embedding: str = "") -> list[Term]:
    """DP and FSDP collectives of the parameters and their gradients."""
    terms = []
    for p in params:
        stacked = p.layers > 0
        # XLA CPU all-reduces over data the gradient of each use of a tied embedding (lookup
        # and output layer) before adding them: twice the gradient (its fsdp reduction
        # adds first).
        data_reduces = 2 if xla_cpu and p.path == tied_embedding else 1
        # The micro-batch loop accumulates gradients in a carry sharded like the parameters,
        # so GSPMD reduces each micro-batch's gradient (not once per step, as it could).
        data_reduces *= micro_batches
        axes = _axes(p.spec)
        other = math.prod(mesh[a] for a in axes if a != "fsdp")  # tensor shards stay split
        full = math.prod(p.shape) * p.itemsize / other            # gathered over fsdp
        layers = max(p.layers, 1)
        grad_runs = layers * micro_batches
        per_layer = full / layers
        fsdp = mesh["fsdp"] if "fsdp" in axes else 1
        if fsdp > 1:
            # The backward pass reads a layer's weights again (gathered again: nothing keeps
            # the forward copy across the scan), but never its biases (d bias = sum of dy).
            bias = p.path.rsplit("/", 1)[-1] in ("bias", "b_q", "b_k", "b_v", "b_o", "b_in",
                                                  "b_out")
            gathers = 2 if p.layers and not bias else 1
            terms.append(Term(f"{p.path} gather", "all-gather", ("fsdp",), fsdp, per_layer,
                              gathers * layers * micro_batches, stacked))
            kind = "all-reduce" if xla_cpu else "reduce-scatter"
            terms.append(Term(f"{p.path} grad", kind, ("fsdp",), fsdp, per_layer, grad_runs,
                              stacked))
            if mesh["data"] > 1:
                terms.append(Term(f"{p.path} grad", "all-reduce", ("data",), mesh["data"],
                                  per_layer / fsdp, layers * data_reduces, stacked))
        else:
            over = tuple(a for a in BATCH_AXES if mesh[a] > 1 and a not in axes)
            if over:
                reduces = data_reduces if over == ("data",) else micro_batches
                terms.append(Term(f"{p.path} grad", "all-reduce", over,
                                  math.prod(mesh[a] for a in over), per_layer,
                                  layers * reduces, stacked))
    return terms


def tensor_terms(shape: StepShape, mesh: dict[str, int], xla_cpu: bool = False) -> list[Term]:
    """Megatron activation all-reduces over tensor."""
    n = mesh["tensor"]
    if n <= 1:
        return []
    act = shape.rows_per_device * shape.seq_len * shape.width * shape.act_bytes
    backward = 4 if xla_cpu else 2
    m = shape.micro_batches
    terms = [Term("blocks forward", "all-reduce", ("tensor",), n, act, 2 * shape.blocks * m,
                  True),
             Term("blocks backward", "all-reduce", ("tensor",), n, act,
                  backward * shape.blocks * m, True)]
    if shape.split_head_transform:
        # Column-parallel with no row-parallel partner: its output is gathered for the
        # LayerNorm and the logits, and its input gradient all-reduced.
        terms += [Term("MLM head transform forward", "all-gather", ("tensor",), n, act, m),
                  Term("MLM head transform backward", "all-reduce", ("tensor",), n, act, m)]
    if shape.vocab_parallel:
        terms.append(Term("vocab-parallel embedding and logits", "all-reduce", ("tensor",), n,
                          act, 2 * m))
    return terms


def expected(params: list[Param], shape: StepShape, mesh: dict[str, int],
             xla_cpu: bool = False) -> list[Term]:
    """All expected collectives of one step."""
    return (parameter_terms(params, mesh, shape.micro_batches, xla_cpu,
                            shape.tied_embedding)
            + tensor_terms(shape, mesh, xla_cpu))


def totals(terms: list[Term], in_layers: bool | None = None) -> dict[str, float]:
    """Per-device ring bytes per step by axes label ('data', 'fsdp', 'data+fsdp', ...);
    in_layers=True/False keeps only the terms inside / outside the layer scan."""
    out: dict[str, float] = {}
    for t in terms:
        if in_layers is not None and t.in_layers != in_layers:
            continue
        key = axes_label(t.axes)
        out[key] = out.get(key, 0.0) + t.total_bytes
    return out


def params_from_tree(abstract_params) -> list[Param]:
    """Params of a tree of ShapeDtypeStructs carrying NamedShardings (StateLayout.abstract
    .params). A parameter under a `layers` key is a scanned stack: its first dimension
    counts layers."""
    import jax  # noqa: PLC0415

    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params)[0]:
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        spec = tuple(leaf.sharding.spec) + (None,) * (len(leaf.shape) - len(leaf.sharding.spec))
        out.append(Param("/".join(keys), tuple(leaf.shape), leaf.dtype.itemsize, spec,
                         leaf.shape[0] if "layers" in keys else 0))
    return out


def step_shape(spec, params: list[Param], mesh: dict[str, int], batch_size: int,
               seq_len: int, micro_batches: int = 1) -> StepShape:
    """The StepShape of a decoder or encoder ModelSpec's train step on `mesh`."""
    import numpy as np  # noqa: PLC0415

    if spec.family not in ("decoder", "encoder"):
        raise ValueError(f"model.family: the communication model covers decoder and encoder, "
                         f"not {spec.family!r}")
    ranks = mesh["data"] * mesh["fsdp"]
    vocab_parallel = any(not p.layers and "tensor" in _axes(p.spec) for p in params)
    tokens = [p.path for p in params if p.path.endswith("tokens/embedding")]
    tied = tokens[0] if spec.tie_embeddings and len(tokens) == 1 else ""
    return StepShape(rows_per_device=batch_size // micro_batches // ranks, seq_len=seq_len,
                     width=spec.width, blocks=spec.num_layers,
                     act_bytes=np.dtype(spec.dtype).itemsize, micro_batches=micro_batches,
                     vocab_parallel=vocab_parallel, tied_embedding=tied,
                     split_head_transform=any(p.path == "head/transform/kernel"
                                              and "tensor" in _axes(p.spec) for p in params))
