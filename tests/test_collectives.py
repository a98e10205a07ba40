"""scaling.collectives (HLO -> collectives) and scaling.comm_model (the analytic bytes).

The parser is checked on a hand-written HLO module whose answer is worked out by hand; the
model against the collectives XLA emits for a tiny decoder and encoder on 8 fake devices.
"""
import math

import pytest

from scaling import collectives as C
from scaling import comm_model as M

MESH = {"data": 2, "fsdp": 2, "tensor": 2}  # device id = 4 * data + 2 * fsdp + tensor

HLO = """HloModule jit_step, entry_computation_layout={()->()}

%add (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %sum = f32[] add(%x, %y)
}

%inner_cond (p: (s32[], bf16[4,8])) -> pred[] {
  %p = (s32[], bf16[4,8]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %two = s32[] constant(2)
  ROOT %lt = pred[] compare(%i, %two), direction=LT
}

%inner_body (p: (s32[], bf16[4,8])) -> (s32[], bf16[4,8]) {
  %p = (s32[], bf16[4,8]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = bf16[4,8]{1,0} get-tuple-element(%p), index=1
  %ag = bf16[8,8]{1,0} all-gather(%x), channel_id=2, replica_groups=[4,2]<=[4,2]T(1,0), dimensions={0}, use_global_device_ids=true
  %s = bf16[4,8]{1,0} slice(%ag), slice={[0:4], [0:8]}
  ROOT %t = (s32[], bf16[4,8]{1,0}) tuple(%i, %s)
}

%outer_body (p: (s32[], f32[16,4], bf16[4,8])) -> (s32[], f32[16,4], bf16[4,8]) {
  %p = (s32[], f32[16,4]{1,0}, bf16[4,8]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %h = f32[16,4]{1,0} get-tuple-element(%p), index=1
  %ar = f32[16,4]{1,0} all-reduce(%h), channel_id=1, replica_groups=[4,2]<=[8], use_global_device_ids=true, to_apply=%add
  %w = bf16[4,8]{1,0} get-tuple-element(%p), index=2
  %c0 = s32[] constant(0)
  %it = (s32[], bf16[4,8]{1,0}) tuple(%c0, %w)
  %loop = (s32[], bf16[4,8]{1,0}) while(%it), condition=%inner_cond, body=%inner_body
  %w2 = bf16[4,8]{1,0} get-tuple-element(%loop), index=1
  ROOT %t = (s32[], f32[16,4]{1,0}, bf16[4,8]{1,0}) tuple(%i, %ar, %w2)
}

%outer_cond (p: (s32[], f32[16,4], bf16[4,8])) -> pred[] {
  %p = (s32[], f32[16,4]{1,0}, bf16[4,8]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %n = s32[] constant(7)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (a: f32[16,4], b: bf16[4,8], y: f32[8], z: f32[4], v: f32[3]) -> f32[4] {
  %a = f32[16,4]{1,0} parameter(0)
  %b = bf16[4,8]{1,0} parameter(1)
  %y = f32[8]{0} parameter(2)
  %z = f32[4]{0} parameter(3)
  %v = f32[3]{0} parameter(4)
  %c = s32[] constant(0)
  %init = (s32[], f32[16,4]{1,0}, bf16[4,8]{1,0}) tuple(%c, %a, %b)
  %layers = (s32[], f32[16,4]{1,0}, bf16[4,8]{1,0}) while(%init), condition=%outer_cond, body=%outer_body, backend_config={"known_trip_count":{"n":"3"}}
  %rs = f32[4]{0} reduce-scatter(%y), channel_id=3, replica_groups={{0,4},{1,5},{2,6},{3,7}}, dimensions={0}, use_global_device_ids=true, to_apply=%add
  %ags = (f32[4]{0}, f32[16]{0}) all-gather-start(%z), channel_id=4, replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}, dimensions={0}, use_global_device_ids=true
  %agd = f32[16]{0} all-gather-done(%ags)
  %pair = (f32[8]{0}, f32[3]{0}) all-reduce(%y, %v), channel_id=5, replica_groups=mesh['axis_0'=2,'axis_1'=4], device_ids=([2,2,2]T(1,0,2)) {'axis_0'}, use_global_device_ids=true, to_apply=%add
  %cp = f32[4]{0} collective-permute(%rs), channel_id=6, source_target_pairs={{0,1},{1,0},{2,2},{3,3},{4,4},{5,5},{6,6},{7,7}}
  ROOT %out = f32[4]{0} add(%cp, %rs)
}
"""


def test_parser_on_a_hand_written_module():
    found = {c.name: c for c in C.parse_collectives(HLO, MESH)}
    assert set(found) == {"ar", "ag", "rs", "ags", "pair", "cp"}  # -done not counted again
    expect = {
        # name: kind, axes, n, S (bytes, by hand), runs
        "ar": ("all-reduce", ("tensor",), 2, 16 * 4 * 4, 3),        # {0,1},{2,3},..; 3 trips
        "ag": ("all-gather", ("fsdp",), 2, 2 * 4 * 8 * 2, 3 * 2),  # {0,2},..; gathered bf16
        "rs": ("reduce-scatter", ("data",), 2, 8 * 4, 1),           # the unscattered input
        "ags": ("all-gather", ("fsdp", "tensor"), 4, 4 * 4 * 4, 1),  # {0..3},{4..7}
        "pair": ("all-reduce", ("fsdp",), 2, (8 + 3) * 4, 1),       # a tuple: both operands
        "cp": ("collective-permute", ("tensor",), 2, 4 * 4, 1),     # only 0 <-> 1 move
    }
    for name, (kind, axes, n, size, runs) in expect.items():
        c = found[name]
        assert (c.kind, c.axes, c.group_size, c.size_bytes, c.count) == (kind, axes, n, size,
                                                                          runs), name
    assert found["ar"].in_loop and found["ag"].in_loop and not found["rs"].in_loop
    assert found["cp"].send_share == pytest.approx(2 / 8)
    # Ring bytes: all-reduce 2(n-1)/n S, gather/scatter (n-1)/n S, permute S x share.
    assert found["ar"].total_bytes == pytest.approx(3 * 2 * 1 / 2 * 256)
    assert found["ags"].total_bytes == pytest.approx(3 / 4 * 64)
    assert found["cp"].total_bytes == pytest.approx(16 / 4)
    totals = C.totals(list(found.values()))
    assert totals["by_axes"]["tensor"] == pytest.approx(768 + 4)
    assert totals["by_kind"]["reduce-scatter"] == pytest.approx(16)


def test_explicit_iota_and_mesh_groups_agree():
    explicit = C.parse_replica_groups("replica_groups={{0,2},{4,6},{1,3},{5,7}}", 8)
    iota = C.parse_replica_groups("replica_groups=[4,2]<=[4,2]T(1,0)", 8)
    mesh = C.parse_replica_groups("replica_groups=mesh['a'=2,'b'=4], "
                                  "device_ids=([2,2,2]T(1,0,2)) {'a'}", 8)
    as_sets = lambda gs: sorted(sorted(g) for g in gs)  # noqa: E731
    assert as_sets(explicit) == as_sets(iota) == as_sets(mesh) == [[0, 2], [1, 3], [4, 6],
                                                                   [5, 7]]
    assert C.group_axes(explicit, MESH) == ("fsdp",)
    with pytest.raises(ValueError, match="no replica groups"):
        C.parse_replica_groups("channel_id=1", 8)


def test_model_terms_by_hand():
    # One stacked weight [L=2, 8, 4] f32 split (fsdp, tensor) on data=2,fsdp=2,tensor=2.
    w = M.Param("blocks/layers/w", (2, 8, 4), 4, (None, "fsdp", "tensor"), layers=2)
    terms = M.parameter_terms([w], MESH)
    by = {(t.kind, t.axes): t for t in terms}
    per_layer = 8 * 4 * 4 / 2  # bytes of one layer's tensor shard, gathered over fsdp
    assert by[("all-gather", ("fsdp",))].size_bytes == per_layer
    assert by[("all-gather", ("fsdp",))].count == 2 * 2  # forward and backward, per layer
    assert by[("reduce-scatter", ("fsdp",))].count == 2
    assert by[("all-reduce", ("data",))].size_bytes == per_layer / 2
    shape = M.StepShape(rows_per_device=4, seq_len=16, width=8, blocks=2, act_bytes=2)
    tp = M.totals(M.tensor_terms(shape, MESH))
    assert tp["tensor"] == pytest.approx(4 * 2 * (4 * 16 * 8 * 2) * 2 * 1 / 2)
