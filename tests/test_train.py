"""Training runs through run(): every family, determinism, schedule, accumulation, bad input."""
import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scaling.commands import train as train_cmd
from scaling.config_loading import load
from scaling.models import build_model, model_spec
from scaling.optim import decay_mask, make_optimizer, make_schedule
from scaling.train_state import TrainState
from scaling.train_step import make_train_step

from _util import run_on_one_device, tiny_config


@pytest.mark.parametrize("family", ["gpt2", "megatron", "bert", "roberta", "transformer"])
def test_three_step_smoke_run_of_every_family(family, data_dir, tmp_path):
    result = run_on_one_device(tiny_config(family, data_dir), tmp_path)
    assert len(result["train_losses"]) == 3
    assert all(np.isfinite(result["train_losses"]))
    assert int(result["state"].step) == 3
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3]
    assert any("eval_loss" in r and "eval_bpb" in r for r in records)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["model"]["vocab_size"] == 384  # "0 = the tokenizer's" was resolved


def test_same_seed_same_losses(data_dir, tmp_path):
    a = run_on_one_device(tiny_config("gpt2", data_dir, steps=4), tmp_path / "a")
    b = run_on_one_device(tiny_config("gpt2", data_dir, steps=4), tmp_path / "b")
    assert a["train_losses"] == b["train_losses"]
    other = tiny_config("gpt2", data_dir, steps=4)
    other.train.seed = 1
    c = run_on_one_device(other, tmp_path / "c")
    assert c["train_losses"] != a["train_losses"]


def test_eval_bits_per_byte_counts_the_eval_bytes(data_dir, tmp_path):
    """eval_bpb = eval_loss * (predicted tokens / their bytes) / ln 2; the ratio is counted
    here by reading the same eval batches (EOS targets are tokens without bytes)."""
    from scaling.data import make_pipeline
    config = tiny_config("gpt2", data_dir, steps=2)
    config.train.eval_steps = 2
    result = run_on_one_device(config, tmp_path)
    batches = make_pipeline(config, "validation", process_index=0, process_count=1)
    weight = text_bytes = 0.0
    for _ in range(config.train.eval_steps):
        batch = next(batches)
        is_byte = (batch["targets"] >= 5) & (batch["targets"] < 5 + 256)  # byte ids
        weight += batch["weights"].sum()
        text_bytes += (batch["weights"] * is_byte).sum()
    assert 0 < text_bytes <= weight  # an EOS target (a document's end) counts no byte
    expected = result["eval"]["eval_loss"] * weight / text_bytes / math.log(2)
    assert result["eval"]["eval_bpb"] == pytest.approx(expected, rel=1e-5)


def test_learning_rate_schedule_values():
    config = load("experiments/gpt2.py:tiny")
    config.optim.update(lr=1e-3, warmup_steps=10, decay="cosine", end_lr_fraction=0.1)
    s = make_schedule(config.optim, total_steps=110)
    peak, end = 1e-3, 1e-4
    assert float(s(0)) == pytest.approx(0.0)
    assert float(s(5)) == pytest.approx(peak / 2)
    assert float(s(10)) == pytest.approx(peak)
    # Cosine from step 10 to 110: halfway (60) is the mean of peak and end.
    assert float(s(60)) == pytest.approx(end + (peak - end) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert float(s(110)) == pytest.approx(end)
    config.optim.decay = "linear"
    s = make_schedule(config.optim, total_steps=110)
    assert float(s(60)) == pytest.approx((peak + end) / 2)


def test_weight_decay_only_on_matrices():
    spec = model_spec(load("experiments/gpt2.py:tiny"))
    params = nn.unbox(build_model(spec).init(jax.random.PRNGKey(0),
                                             {"inputs": jnp.zeros((1, 8), jnp.int32)}))["params"]
    mask = decay_mask(params)
    blk = mask["blocks"]["layer_0"]
    assert blk["attn"]["w_q"] and blk["mlp"]["w_in"] and mask["embed"]["tokens"]["embedding"]
    assert not blk["attn"]["b_q"] and not blk["ln_attn"]["scale"] and not blk["mlp"]["b_in"]
    assert not mask["embed"]["positions"]["embedding"]


def test_gradient_accumulation_equals_one_big_batch():
    config = load("experiments/gpt2.py:tiny")
    config.model.update(num_layers=2, width=32, num_heads=2, mlp_dim=64)
    spec = model_spec(config)
    model = build_model(spec)
    tx = make_optimizer(config.optim, 10)
    schedule = make_schedule(config.optim, 10)
    rng = np.random.default_rng(0)
    batch = {"inputs": jnp.asarray(rng.integers(5, 300, (8, 16)), jnp.int32),
             "targets": jnp.asarray(rng.integers(5, 300, (8, 16)), jnp.int32),
             # Uneven token counts per micro-batch: accumulation must weight by tokens.
             "weights": jnp.asarray(rng.random((8, 16)) < np.linspace(0.2, 1, 8)[:, None],
                                    jnp.float32)}
    params = nn.unbox(model.init(jax.random.PRNGKey(0), {"inputs": batch["inputs"]}))["params"]
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       opt_state=tx.init(params), rng=jax.random.PRNGKey(1))
    one, m1 = jax.jit(make_train_step(model, tx, schedule, 1))(state, batch)
    four, m4 = jax.jit(make_train_step(model, tx, schedule, 4))(state, batch)
    assert float(m4["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
    assert float(m4["grad_norm"]) == pytest.approx(float(m1["grad_norm"]), rel=1e-4)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nonfinite_step_is_not_applied():
    config = load("experiments/gpt2.py:tiny")
    config.model.update(num_layers=1, width=32, num_heads=2, mlp_dim=64)
    model = build_model(model_spec(config))
    tx = optax.sgd(0.1)
    ids = jnp.ones((2, 8), jnp.int32)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), {"inputs": ids}))["params"]
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.PRNGKey(1))
    bad = {"inputs": ids, "targets": ids, "weights": jnp.full((2, 8), jnp.nan)}
    new, metrics = jax.jit(make_train_step(model, tx, lambda s: 0.1))(state, bad)
    assert int(metrics["nonfinite"]) == 1 and int(new.step) == 1
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("override,field", [
    ("--config.data.dataset=no_such_dataset_xyz", "data.dataset"),
    ("--config.data.corpus=/nonexistent/dir/*.txt", "data.corpus"),
    ("--config.data.seq_len=4096", "data.seq_len"),
    ("--config.train.micro_batches=3", "train.batch_size"),
    ("--config.optim.lr=0", "optim.lr"),
    ("--config.model.width=130", "model.width"),
    ("--config.parallel.mesh.data=3", "parallel.mesh"),        # 3 != the 8 test devices
    ("--config.parallel.num_devices=99", "parallel.num_devices"),
    ("--config.parallel.mesh.tensor=8", "parallel.mesh.tensor"),  # 4 heads
])
def test_bad_input_exits_2_with_one_line_naming_the_field(override, field, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir", str(workdir),
                           override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"scaling train: error: {field}:") and "\n" not in err, err
    assert not os.path.exists(workdir)  # nothing written before the error
