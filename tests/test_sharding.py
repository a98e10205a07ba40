"""Mesh layouts: golden PartitionSpecs, equality with one device, pmap, and bad input.

Every layout trains the same tiny GPT-2 (2 layers, width 64, 8 heads so tensor=8 divides,
byte vocabulary 384 = 8 x 48) for 3 steps from the same initial parameters and batches,
and must match a 1-device run within 1e-5 relative (fp32).
"""
import re

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from scaling import pmap_engine, sharding
from scaling.compile_step import compile_step
from scaling.config_loading import load
from scaling.models import abstract_params, build_model, example_batch, model_spec
from scaling.optim import make_optimizer, make_schedule

STEPS, BATCH, SEQ = 3, 16, 32

LAYOUTS = {
    "dp8": {"data": 8},
    "fsdp8": {"fsdp": 8},
    "tp8": {"tensor": 8},
    "d2f2t2": {"data": 2, "fsdp": 2, "tensor": 2},
}

# Expected mesh axes per dimension ("-" = not split), written by hand from the rules
# embed->fsdp, heads/mlp/vocab->tensor. "*" in a path stands for any layer / any LayerNorm.
#  parameter                     logical axes            dp8      fsdp8       tp8          d2f2t2
GOLDEN = [
    ("embed/tokens/embedding",    "vocab embed",          "- -",   "- fsdp",   "tensor -",  "tensor fsdp"),
    ("embed/positions/embedding", "positions embed",      "- -",   "- fsdp",   "- -",       "- fsdp"),
    ("attn/w_[qkv]",              "embed heads head_dim", "- - -", "fsdp - -", "- tensor -", "fsdp tensor -"),
    ("attn/b_[qkv]",              "heads head_dim",       "- -",   "- -",      "tensor -",  "tensor -"),
    ("attn/w_o",                  "heads head_dim embed", "- - -", "- - fsdp", "tensor - -", "tensor - fsdp"),
    ("attn/b_o",                  "embed",                "-",     "fsdp",     "-",         "fsdp"),
    ("mlp/w_in",                  "embed mlp",            "- -",   "fsdp -",   "- tensor",  "fsdp tensor"),
    ("mlp/b_in",                  "mlp",                  "-",     "-",        "tensor",    "tensor"),
    ("mlp/w_out",                 "mlp embed",            "- -",   "- fsdp",   "tensor -",  "tensor fsdp"),
    ("mlp/b_out",                 "embed",                "-",     "fsdp",     "-",         "fsdp"),
    ("ln_*/(scale|bias)",         "embed",                "-",     "fsdp",     "-",         "fsdp"),
]
COLUMN = {name: i for i, name in enumerate(LAYOUTS)}


def tiny_config(**model):
    config = load("experiments/gpt2.py:tiny")
    config.model.update(dict(num_layers=2, width=64, num_heads=8, mlp_dim=256, max_len=SEQ),
                        **model)
    config.data.seq_len = SEQ
    config.train.update(steps=STEPS, batch_size=BATCH)
    return config


def _spec_tuple(spec, ndim):
    return tuple(spec) + (None,) * (ndim - len(spec))


def _golden(path: str, layout: str, ndim: int):
    hits = [row for row in GOLDEN
            if re.search("(^|/)" + row[0].replace("*", "[^/]*") + "$", path)]
    assert len(hits) == 1, f"{path}: {len(hits)} golden rows match"
    text = hits[0][2 + COLUMN[layout]].split()
    assert len(text) == ndim, (path, text)
    return tuple(None if t == "-" else t for t in text)


def _paths(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, P))[0]
    return {"/".join(str(k.key) for k in path): leaf for path, leaf in leaves}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("scan", [False, True])
def test_partition_specs_match_golden_table(layout, scan):
    spec = model_spec(tiny_config(scan_layers=scan))
    boxed = abstract_params(spec)
    mesh = sharding.make_mesh(LAYOUTS[layout])
    specs, fallbacks = sharding.param_specs(boxed, mesh, sharding.logical_rules("default"))
    shapes = {k: v.shape for k, v in _paths(nn.unbox(boxed)).items()}
    assert fallbacks == {}
    assert len(shapes) == (16 * 2 if not scan else 16) + 4
    for path, got in _paths(specs).items():
        ndim = len(shapes[path])
        if scan and "/layers/" in path:  # scanned: a leading, unsplit 'layers' axis
            want = (None,) + _golden(path, layout, ndim - 1)
        else:
            want = _golden(path, layout, ndim)
        assert _spec_tuple(got, ndim) == want, f"{layout} {path}"


def test_vocab_not_divisible_falls_back_to_replicated_and_is_reported():
    spec = model_spec(tiny_config(vocab_size=385))
    mesh = sharding.make_mesh({"tensor": 8})
    specs, fallbacks = sharding.param_specs(abstract_params(spec), mesh,
                                            sharding.logical_rules("default"))
    assert _spec_tuple(_paths(specs)["embed/tokens/embedding"], 2) == (None, None)
    assert list(fallbacks) == ["embed/tokens/embedding"]
    assert "385" in fallbacks["embed/tokens/embedding"][0]


# ---- training equality --------------------------------------------------------------------
def _batches():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        ids = rng.integers(1, 384, size=(BATCH, SEQ + 1), dtype=np.int32)
        weights = (rng.random((BATCH, SEQ)) > 0.1).astype(np.float32)
        out.append({"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": weights})
    return out


def _setup(config, mesh):
    spec = model_spec(config)
    model = build_model(spec)
    tx = make_optimizer(config.optim, config.train.steps)
    schedule = make_schedule(config.optim, config.train.steps)
    rules = sharding.logical_rules(config.parallel.rules)
    layout = sharding.train_state_layout(model, tx, example_batch(spec, 1, SEQ),
                                         jax.random.PRNGKey(0), mesh, rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        state = layout.create(jax.random.PRNGKey(0))
    return model, tx, schedule, rules, layout, state


def train_jit(config, mesh):
    """3 steps as run() takes them: sharded state, global batches, scaling.compile_step."""
    model, tx, schedule, rules, layout, state = _setup(config, mesh)
    batch_sh = sharding.batch_sharding(mesh)
    batches = [{k: jax.device_put(v, batch_sh) for k, v in batch.items()}
               for batch in _batches()]
    step = compile_step(model, tx, schedule, config.train, layout, mesh, rules, batches[0],
                        state, donate=True).fn
    losses = []
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        for batch in batches:
            state, metrics = step(state, batch)
            losses.append(float(metrics["loss"]))
    return np.array(losses), state


def train_pmap(config):
    model, tx, schedule, _, _, state = _setup(config, sharding.make_mesh({"data": -1}))
    state = pmap_engine.replicate(state)
    step = pmap_engine.make_step(model, tx, schedule)
    losses = []
    for batch in _batches():
        state, metrics = step(state, pmap_engine.split_batch(batch))
        losses.append(float(metrics["loss"]))
    return np.array(losses), pmap_engine.unreplicate(state)


@pytest.fixture(scope="module")
def reference():
    """1-device run: (losses, final params, initial layer_0 mlp/w_in)."""
    mesh = sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])
    initial = _setup(tiny_config(), mesh)[-1].params["blocks"]["layer_0"]["mlp"]["w_in"]
    initial = np.asarray(initial)
    losses, state = train_jit(tiny_config(), mesh)
    return losses, jax.device_get(state.params), initial


def _assert_same(losses, params, reference):
    ref_losses, ref_params, initial_w_in = reference
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    flat = _paths(jax.device_get(params))
    bad = {}
    for path, want in _paths(ref_params).items():
        got = np.asarray(flat[path])
        if path.endswith("attn/b_k"):
            # The key bias adds q.b_k to a whole row of scores, which softmax ignores: its
            # gradient is 0 in exact arithmetic, and AdamW (m / sqrt(v)) turns round-off into
            # steps of size lr and arbitrary sign. Only their size can be compared.
            config = tiny_config()
            schedule = make_schedule(config.optim, config.train.steps)
            bound = 1.01 * sum(float(schedule(i)) for i in range(STEPS)) + 1e-7
            assert np.abs(got).max() <= bound and np.abs(want).max() <= bound, path
            continue
        rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
        if rel >= 1e-5:
            bad[path] = f"{rel:.2e}"
    assert not bad, f"relative differences: {bad}"
    # The update moved the parameters (a no-op step would trivially match).
    assert not np.allclose(flat["blocks/layer_0/mlp/w_in"], initial_w_in, atol=1e-7)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_single_device(layout, reference):
    mesh = sharding.make_mesh(LAYOUTS[layout])
    losses, state = train_jit(tiny_config(), mesh)
    w_in = state.params["blocks"]["layer_0"]["mlp"]["w_in"]
    want = _golden("blocks/layer_0/mlp/w_in", layout, 2)
    assert _spec_tuple(w_in.sharding.spec, 2) == want  # the layout really is in place
    if layout != "dp8":
        mu = state.opt_state  # AdamW moments follow the parameters (ZeRO-3 under fsdp)
        specs = {s.spec for s in jax.tree.leaves(jax.tree.map(lambda x: x.sharding, mu))
                 if len(s.spec)}
        assert specs, "optimizer state is not sharded"
    _assert_same(losses, state.params, reference)


def test_pmap_matches_single_device(reference):
    losses, state = train_pmap(tiny_config())
    _assert_same(losses, state.params, reference)


# ---- bad input: one line, naming the field, before compiling --------------------------
def test_mesh_product_must_equal_device_count():
    with pytest.raises(ValueError, match=r"^parallel\.mesh: data\*fsdp\*tensor = 6 but there are 8"):
        sharding.make_mesh({"data": 3, "tensor": 2})


def test_batch_must_divide_by_data_parallel_size():
    spec = model_spec(tiny_config())
    mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
    with pytest.raises(ValueError, match=r"^train\.batch_size: .*12 .*data\*fsdp=8"):
        sharding.check_divisibility(spec, mesh, 12)


def test_heads_must_divide_by_tensor():
    spec = model_spec(tiny_config(num_heads=4))
    mesh = sharding.make_mesh({"tensor": 8})
    with pytest.raises(ValueError, match=r"^parallel\.mesh\.tensor: model\.num_heads=4"):
        sharding.check_divisibility(spec, mesh, BATCH)


@pytest.mark.parametrize("rules, message", [
    ("default,colour=tensor", r"unknown logical axis 'colour'"),
    ("embed=model", r"unknown mesh axis 'model' for 'embed'"),
    ("megatron", r"unknown table 'megatron'"),
    ("default,embed", r"'embed' is not logical=mesh_axis"),
])
def test_bad_rules(rules, message):
    with pytest.raises(ValueError, match=r"^parallel\.rules: .*" + message):
        sharding.logical_rules(rules)


def test_rules_overrides():
    rules = dict(sharding.logical_rules("default,vocab=none,batch=data+fsdp,embed=tensor"))
    assert rules["vocab"] is None and rules["batch"] == ("data", "fsdp")
    assert rules["embed"] == "tensor" and rules["mlp"] == "tensor"


def test_errors_come_before_compiling(tmp_path):
    from scaling import train
    config = tiny_config(num_heads=4)
    config.parallel.mesh.update(data=1, tensor=8)
    with pytest.raises(ValueError, match=r"^parallel\.mesh\.tensor"):
        train.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
