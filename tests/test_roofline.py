"""scaling.roofline: which link an axis runs over, and one step's time worked out by hand."""
import dataclasses

import pytest

from scaling import roofline
from scaling.hardware import DEVICES

V100 = DEVICES["v100"]     # 16 per node (DGX-2H), NVLink 150 GB/s, IB 6.25 GB/s per GPU
H100 = DEVICES["h100"]     # 8 per node, NVLink 450 GB/s, IB 50 GB/s per GPU


def test_group_span_follows_row_major_mesh_order():
    mesh = {"data": 4, "fsdp": 2, "tensor": 8}
    assert roofline.group_span(mesh, ("tensor",)) == 8           # ids 0..7
    assert roofline.group_span(mesh, ("fsdp",)) == 16            # ids 0, 8
    assert roofline.group_span(mesh, ("data",)) == 64            # ids 0, 16, 32, 48
    assert roofline.group_span(mesh, ("data", "fsdp")) == 64
    assert roofline.group_span({"data": 1, "fsdp": 1, "tensor": 1}, ("data",)) == 1


def test_links_by_node_size():
    mesh = {"data": 32, "fsdp": 2, "tensor": 8}
    # fsdp x tensor = 16 devices: one DGX-2H node of V100s, but two DGX H100 nodes.
    assert roofline.axis_link(V100, mesh, ("fsdp",)) == ("NVLink 2 / NVSwitch", 150e9)
    assert roofline.axis_link(H100, mesh, ("fsdp",)) == ("NDR IB", 50e9)
    assert roofline.axis_link(H100, mesh, ("tensor",))[1] == 450e9
    assert roofline.axis_link(V100, mesh, ("data",)) == ("EDR IB", 6.25e9)
    tpu = DEVICES["tpu-v3"]                          # one 1024-chip pod, no DCN figure
    assert roofline.axis_link(tpu, {"data": 1024, "fsdp": 1, "tensor": 1},
                              ("data",))[0] == "ICI 2D torus"
    with pytest.raises(ValueError, match="no inter-node bandwidth for tpu-v3"):
        roofline.axis_link(tpu, {"data": 2048, "fsdp": 1, "tensor": 1}, ("data",))


def test_step_time_by_hand():
    # Megatron-like layout on 512 V100s, made-up round numbers:
    #   compute 1e14 FLOPs / (125e12 x 0.5) = 1.6 s
    #   tensor  15e9 B over NVLink 150e9 B/s = 0.1 s
    #   data    12.5e9 B over IB 6.25e9 B/s  = 2.0 s
    mesh = {"data": 64, "fsdp": 1, "tensor": 8}
    peak = roofline.compute_peak(V100, "bfloat16")
    assert peak == 125e12                                         # the fp16 tensor-core peak
    t = roofline.step_time(1e14, peak, {"tensor": 15e9, "data": 12.5e9, "fsdp": 0.0, "-": 1.0},
                           V100, mesh, mfu=0.5)
    assert t.compute_s == pytest.approx(1.6)
    assert t.comm_s == pytest.approx({"tensor": 0.1, "data": 2.0})
    assert t.comm_total_s == pytest.approx(2.1)
    assert t.overlapped_s == pytest.approx(2.1)
    assert t.serial_s == pytest.approx(3.7)
    assert t.comm_share == pytest.approx(2.1 / 3.7)
    assert t.bound == "comm (data over EDR IB)"
    # A fast network (H100's 50 GB/s per GPU, same bytes) makes it compute-bound.
    fast = dataclasses.replace(V100, inter_node_bw=50e9)
    t2 = roofline.step_time(1e14, peak, {"tensor": 15e9, "data": 12.5e9}, fast, mesh, 0.5)
    assert t2.comm_total_s == pytest.approx(0.1 + 0.25)
    assert t2.bound == "compute" and t2.overlapped_s == pytest.approx(1.6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="--mfu"):
        roofline.step_time(1.0, 1.0, {}, V100, {"data": 1, "fsdp": 1, "tensor": 1}, mfu=0)
    with pytest.raises(ValueError, match="no published fp32 peak"):
        roofline.compute_peak(DEVICES["tpu-v4"], "float32")
