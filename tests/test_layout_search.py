"""scaling.layout_search and `scaling plan --search`: which layouts are tried, which are
dropped for memory, and an order that a constructed network forces.

The model cases use the tiny GPT-2 (4 heads, width 128, MLP 512, batch 16 x 128) on 8
devices that need not exist: the search only traces shapes.
"""
import dataclasses

import pytest

from scaling import layout_search as S
from scaling.commands import plan as plan_cmd
from scaling.config_loading import load
from scaling.hardware import DEVICES
from scaling.models import model_spec
from scaling.plan import memory_per_device
from scaling.sizes import count_params


def _tuples(layouts):
    return {(x.data, x.fsdp, x.tensor, x.micro_batches) for x in layouts}


def test_enumeration_by_hand():
    # 4 devices, batch 4, 2 heads, MLP 8, width 4, 2 devices per node:
    #   tensor 1: (data, fsdp) = (4,1) (2,2) (1,4); 1 sequence per device -> 1 micro-batch
    #   tensor 2: (2,1) (1,2); 2 sequences per device -> 1 or 2 micro-batches
    #   tensor 4: more than a node holds
    got = S.enumerate_layouts(4, 4, num_heads=2, mlp_dim=8, width=4, devices_per_node=2,
                              remats=("none",))
    assert _tuples(got) == {(4, 1, 1, 1), (2, 2, 1, 1), (1, 4, 1, 1),
                            (2, 1, 2, 1), (2, 1, 2, 2), (1, 2, 2, 1), (1, 2, 2, 2)}
    assert len(got) == 7                                           # no duplicates
    # Each remat policy multiplies the list.
    assert len(S.enumerate_layouts(4, 4, 2, 8, 4, 2)) == 7 * len(S.REMATS)


def test_enumeration_drops_what_does_not_divide():
    # 3 heads: tensor 2 splits no head evenly; width 2: fsdp 4 cannot split it.
    got = S.enumerate_layouts(4, 4, num_heads=3, mlp_dim=8, width=2, devices_per_node=2,
                              remats=("none",))
    assert _tuples(got) == {(4, 1, 1, 1), (2, 2, 1, 1)}
    # Batch 2 on 4 devices: only a mesh with 2 data-parallel ranks splits it.
    got = S.enumerate_layouts(4, 2, num_heads=2, mlp_dim=8, width=4, devices_per_node=2,
                              remats=("none",))
    assert _tuples(got) == {(2, 1, 2, 1), (1, 2, 2, 1)}
    assert S.enumerate_layouts(3, 4, 2, 8, 4, 2) == []


@pytest.fixture(scope="module")
def tiny():
    config = load("experiments/gpt2.py:tiny")
    return config, model_spec(config)


def test_memory_extrapolation_matches_the_planner(tiny):
    # 8 rows per micro-batch: extrapolated from traces at 1 and 2 rows, against the
    # planner traced at 8 rows directly.
    config, spec = tiny
    layout = S.Layout(2, 1, 1, 1, "none")
    direct = memory_per_device(count_params(spec).total, spec, layout.mesh, 16, 128,
                               1, "causal_lm").total_config
    assert S.memory_of(layout, spec, count_params(spec).total, 16, 128,
                       "causal_lm") == pytest.approx(direct, rel=1e-6)


def test_a_layout_that_does_not_fit_is_excluded(tiny):
    config, _ = tiny
    roomy = S.search(config, 8, "h100")
    sizes = sorted(c.memory_bytes for c in roomy["ranked"])
    assert roomy["excluded"] == 0 and len(sizes) == roomy["considered"]
    hbm = sizes[len(sizes) // 2]
    small = dataclasses.replace(DEVICES["h100"], hbm_bytes=int(hbm))
    tight = S.search(config, 8, "h100", hw=small)
    assert all(c.memory_bytes <= hbm for c in tight["ranked"])
    assert tight["excluded"] == sum(m > hbm for m in sizes) > 0
    # The biggest one (pure data parallel, one micro-batch, no remat) is gone.
    biggest = max(roomy["ranked"], key=lambda c: c.memory_bytes).layout
    assert biggest not in {c.layout for c in tight["ranked"]}


def test_free_network_ranks_by_compute_alone(tiny):
    # Infinite bandwidth: every layout without recompute takes FLOPs / (peak x MFU);
    # full remat's 4/3 ranks below all of them.
    config, spec = tiny
    free = dataclasses.replace(DEVICES["h100"], intra_node_bw=1e30, inter_node_bw=1e30)
    ranked = S.search(config, 8, "h100", mfu=0.5, hw=free)["ranked"]
    flops = spec.train_flops_per_sequence(128) * 16 / 8
    fastest = flops / (free.peak_flops("fp32") * 0.5)          # the tiny model is float32
    assert ranked[0].step_s == pytest.approx(fastest)
    remats = [c.layout.remat for c in ranked]
    assert "full" not in remats[:remats.index("full")] and set(remats[remats.index("full"):]) \
        == {"full"}
    assert ranked[-1].step_s == pytest.approx(fastest * 4 / 3)


def test_the_slow_link_decides_the_order(tiny):
    config, _ = tiny
    # Nodes of 4 devices. A network slower than NVLink by 1e6: what crosses nodes decides.
    # data=8 all-reduces every gradient across nodes; data=2 with fsdp x tensor = 4 inside a
    # node sends only a quarter of them across: those rank first, and all before data=8.
    # (One micro-batch: each one reduces its gradients again, see scaling.comm_model.)
    slow_net = dataclasses.replace(DEVICES["h100"], devices_per_node=4, inter_node_bw=450.0)
    ranked = S.search(config, 8, "h100", hw=slow_net, remats=("none",),
                      max_micro_batches=1)["ranked"]
    meshes = [(c.layout.data, c.layout.fsdp * c.layout.tensor) for c in ranked]
    assert meshes[0] == (2, 4)
    last_quarter = max(i for i, m in enumerate(meshes) if m == (2, 4))
    assert last_quarter < meshes.index((8, 1))
    assert ranked[0].time.bound.startswith("comm (data over")
    # The other way round (slow NVLink, fast network): only pure data parallelism over 8
    # (its groups span both nodes) avoids the slow link, so it ranks first.
    slow_node = dataclasses.replace(DEVICES["h100"], devices_per_node=4, intra_node_bw=450.0)
    ranked = S.search(config, 8, "h100", hw=slow_node, remats=("none",))["ranked"]
    assert (ranked[0].layout.data, ranked[0].layout.micro_batches) == (8, 1)
    assert all(c.layout.data < 8 for c in ranked if c.step_s > 2 * ranked[0].step_s)


@pytest.mark.parametrize("argv, message", [
    (["--search", "--config", "experiments/gpt2.py:tiny"], "--search: needs --devices"),
    (["--search", "--devices", "8", "--mesh", "data=8", "--config", "experiments/gpt2.py:tiny"],
     "drop --mesh"),
    (["--search", "--devices", "8", "--top", "0", "--config", "experiments/gpt2.py:tiny"],
     "--top: must be positive"),
    (["--top", "3", "--config", "experiments/gpt2.py:tiny"], "only with --search"),
    (["--search", "--devices", "8", "--table"], "not with --table"),
    (["--search", "--devices", "8", "--device", "v200", "--config",
      "experiments/gpt2.py:tiny"], "--device: unknown 'v200'"),
    (["--search", "--devices", "7", "--config", "experiments/gpt2.py:tiny"],
     "no layout of 7 devices"),
])
def test_bad_flags_one_line(argv, message, capsys):
    assert plan_cmd.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_prints_the_top_k(capsys):
    assert plan_cmd.main(["--search", "--devices", "8", "--top", "3", "--json", "--config",
                          "experiments/gpt2.py:tiny"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    steps = [c["step_s"] for c in out["top"]]
    assert len(steps) == 3 and steps == sorted(steps)
    assert out["config_layout"]["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
