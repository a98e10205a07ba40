"""Step time from FLOPs and bytes on the wire: a roofline for one train step.

compute time  = FLOPs per device per step / (the device's dense peak in the run's precision
                x an assumed MFU; 0.5 by default, for matmul-bound transformer steps);
comm time     = sum over the mesh axes of the bytes each device sends on that axis per step
                / the bandwidth of the link that axis runs over;
step time     = max(compute, comm) with perfect overlap, compute + comm without any.

Which link an axis runs over follows from the mesh's device order: (data, fsdp, tensor) is
row-major, so `tensor` groups are neighbouring devices and a `data` group strides over
everything inside it. A group whose devices lie within one node (NVLink / NVSwitch; on a TPU,
one ICI slice) uses `intra_node_bw`; one that spans nodes is limited by each device's share
of the node's network (`inter_node_bw`: InfiniBand, Ethernet, TPU DCN). Bandwidths and node
sizes: scaling.hardware.DEVICES. The ring convention of the bytes (all-reduce 2(n-1)/n S)
is scaling.collectives'. Not modelled: hierarchical (intra- then inter-node) collectives,
latency, congestion, and MFU falling as matmuls get thinner. Pure arithmetic, no JAX.
"""
from __future__ import annotations

import dataclasses
import math

from scaling.mesh import MESH_AXES

DEFAULT_MFU = 0.5


def group_span(mesh: dict[str, int], axes: tuple[str, ...]) -> int:
    """Consecutive device ids one group over `axes` spans: the outermost axis's size times
    the sizes of all axes inside it (mesh order data, fsdp, tensor; row-major)."""
    order = [a for a in MESH_AXES if a in mesh]
    used = [order.index(a) for a in axes if mesh.get(a, 1) > 1]
    if not used:
        return 1
    return math.prod(mesh[a] for a in order[min(used):])


def _link_names(hw) -> tuple[str, str]:
    intra, _, inter = hw.interconnect.partition(";")
    return intra.strip(), (inter.strip() or "network")


def axis_link(hw, mesh: dict[str, int], axes: tuple[str, ...]) -> tuple[str, float]:
    """(link name, bytes/s per device) for a collective over `axes` on device `hw`.

    Raises:
      ValueError: the group spans nodes and the table has no inter-node bandwidth.
    """
    intra, inter = _link_names(hw)
    if group_span(mesh, axes) <= hw.devices_per_node:
        return intra, hw.intra_node_bw
    if hw.inter_node_bw is None:
        raise ValueError(f"--devices: a {'+'.join(axes)} group spans more than "
                         f"{hw.devices_per_node} {hw.name} devices (one node/slice) and "
                         f"scaling/hardware.py has no inter-node bandwidth for {hw.name}")
    return inter, hw.inter_node_bw


def compute_peak(hw, dtype: str) -> float:
    """Dense peak FLOP/s for a model.dtype: the chip's 16-bit peak for bfloat16 (fp16 on
    chips without bf16, P100 and V100, which trained in fp16), fp32 for float32."""
    if dtype in ("bfloat16", "float16"):
        return hw.peak_flops_bf16
    if dtype == "float32":
        return hw.peak_flops("fp32")
    raise ValueError(f"model.dtype: no peak for {dtype!r}; use bfloat16 or float32")


@dataclasses.dataclass(frozen=True)
class StepTime:
    """Seconds of one step: compute, and communication per axes label ('data', 'fsdp',
    'data+fsdp', 'tensor'), with the link each label runs over."""
    compute_s: float
    comm_s: dict[str, float]
    links: dict[str, str]

    @property
    def comm_total_s(self) -> float:
        return sum(self.comm_s.values())

    @property
    def overlapped_s(self) -> float:
        """Communication fully hidden behind compute (or the reverse)."""
        return max(self.compute_s, self.comm_total_s)

    @property
    def serial_s(self) -> float:
        """No overlap at all."""
        return self.compute_s + self.comm_total_s

    @property
    def comm_share(self) -> float:
        """Communication's share of the serial step."""
        return self.comm_total_s / self.serial_s if self.serial_s else 0.0

    @property
    def bound(self) -> str:
        """'compute', or 'comm (<axes> over <link>)' naming the largest communication term."""
        if self.compute_s >= self.comm_total_s:
            return "compute"
        label = max(self.comm_s, key=self.comm_s.get)
        return f"comm ({label} over {self.links[label]})"

    def to_dict(self) -> dict:
        return {"compute_s": self.compute_s, "comm_s": dict(self.comm_s),
                "links": dict(self.links), "comm_total_s": self.comm_total_s,
                "overlapped_s": self.overlapped_s, "serial_s": self.serial_s,
                "comm_share": self.comm_share, "bound": self.bound}


def step_time(flops_per_device: float, peak_flops: float, comm_bytes: dict[str, float],
              hw, mesh: dict[str, int], mfu: float = DEFAULT_MFU) -> StepTime:
    """The roofline of one step.

    Args:
      flops_per_device: FLOPs each device executes per step (with any remat recompute).
      peak_flops: the device's dense peak in the run's precision (compute_peak).
      comm_bytes: bytes each device sends per step, by axes label ('data+fsdp' = a group over
        both axes; '-' = no traffic), as scaling.comm_model.totals gives them.
      hw: the scaling.hardware.DeviceSpec (bandwidths, devices per node).
      mesh: {'data': n, 'fsdp': n, 'tensor': n}.
      mfu: the fraction of peak the compute reaches.
    """
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu: must be in (0, 1], got {mfu}")
    comm_s, links = {}, {}
    for label, sent in comm_bytes.items():
        axes = tuple(a for a in label.split("+") if a in mesh and mesh[a] > 1)
        if not axes or sent <= 0:
            continue
        link, bandwidth = axis_link(hw, mesh, axes)
        comm_s[label] = sent / bandwidth
        links[label] = link
    return StepTime(flops_per_device / (peak_flops * mfu), comm_s, links)
