"""Checkpoints: exact round trip, retention, resume on other meshes, damaged-latest fallback,
and bad input (exit 2, nothing written). Kills and signals are in test_faults.py.

All runs are a tiny GPT-2 (2 layers, width 64, seq 32, batch 8) on the 8 fake CPU devices.
"""
import json
import os
import shutil
import warnings

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from scaling import checkpoint as ckpt_lib
from scaling import sharding, train
from scaling.commands import train as train_cmd
from scaling.config_loading import load
from scaling.runs import read_run
from scaling.train_state import TrainState

from _util import run_on

STEPS = 20


pytestmark = pytest.mark.usefixtures("compile_cache")


def tiny_config(data_dir, steps=STEPS, mesh=None, every=0):
    config = load("experiments/gpt2.py:tiny")
    config.model.update(num_layers=2, width=64, num_heads=4, mlp_dim=256)
    config.data.update(seq_len=32, data_dir=data_dir)
    config.train.update(steps=steps, batch_size=8, log_every=1, eval_every=steps, eval_steps=1)
    config.metrics.update(tensorboard=False, device_peak_tflops=1.0)
    config.parallel.mesh.update(mesh or {"data": 1, "fsdp": 8, "tensor": 1})
    config.checkpoint.every = every
    return config


def cli_args(config_overrides, workdir):
    return ["--config", "experiments/gpt2.py:tiny", "--workdir", str(workdir),
            *[f"--config.{k}={v}" for k, v in config_overrides.items()]]


def tiny_overrides(data_dir, steps=STEPS, every=0, **more):
    """The command-line form of tiny_config (FSDP 8), for `scaling train` subprocesses."""
    return {"model.num_layers": 2, "model.width": 64, "model.num_heads": 4,
            "model.mlp_dim": 256, "data.seq_len": 32, "data.data_dir": data_dir,
            "train.steps": steps, "train.batch_size": 8, "train.log_every": 1,
            "train.eval_every": steps, "train.eval_steps": 1, "metrics.tensorboard": False,
            "metrics.device_peak_tflops": 1.0, "parallel.mesh.data": 1,
            "parallel.mesh.fsdp": 8, "parallel.mesh.tensor": 1, "checkpoint.every": every,
            **more}


def assert_trees_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))


def losses_by_step(workdir):
    """The loss of every step, the latest record per step (as scaling.runs reads it)."""
    return {r["step"]: r["loss"] for r in read_run(workdir).train}


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """An uninterrupted 20-step run on FSDP 8 that checkpoints at steps 18 and 20."""
    workdir = tmp_path_factory.mktemp("reference")
    result = train.run(tiny_config(data_dir, every=18), str(workdir))
    return workdir, result


def resume_copy(reference_dir, step, target):
    """A new workdir holding only the reference's checkpoint of `step`."""
    os.makedirs(target / ckpt_lib.CHECKPOINT_DIR)
    shutil.copytree(reference_dir / ckpt_lib.CHECKPOINT_DIR / str(step),
                    target / ckpt_lib.CHECKPOINT_DIR / str(step))
    return target


# ----------------------------------------------------------------------------- round trip

def small_state(mesh):
    """A TrainState with random leaves of several dtypes, sharded over `mesh`'s fsdp axis."""
    rng = np.random.default_rng(0)
    sh = NamedSharding(mesh, P("fsdp"))
    rep = NamedSharding(mesh, P())
    params = {"w": jax.device_put(rng.standard_normal((16, 8)).astype(np.float32), sh),
              "b": jax.device_put(rng.standard_normal((8,)).astype(np.float32), rep)}
    opt = ({"count": jax.device_put(np.int32(7), rep)},
           {"mu": jax.tree.map(lambda x: x * 0.5, params)})
    return TrainState(step=jax.device_put(np.int32(7), rep), params=params, opt_state=opt,
                      rng=jax.device_put(np.asarray([3, 4], np.uint32), rep))


def abstract_of(state, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)


def test_save_restore_round_trip_is_exact_including_data_position(tmp_path, data_dir):
    config = tiny_config(data_dir)
    mesh8 = sharding.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
    state = small_state(mesh8)
    ckpts = ckpt_lib.Checkpoints(str(tmp_path), config.checkpoint, {"model": {"width": 1}})
    ckpts.save(7, state, {"next_index": 7})
    ckpts.close()

    resume = ckpt_lib.Resume(ckpt_lib.checkpoint_dir(str(tmp_path)), [7], params_only=False)
    same = jax.tree.map(lambda x: x.sharding, state)
    restored, data_state, step = ckpt_lib.Checkpoints(
        str(tmp_path), config.checkpoint, {}).restore(resume, abstract_of(state, same))
    assert step == 7 and data_state == {"next_index": 7}
    assert_trees_equal(restored, state)
    assert restored.params["w"].sharding == state.params["w"].sharding

    # Onto one device: the same values, now single-device arrays.
    mesh1 = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    one = jax.tree.map(lambda _: NamedSharding(mesh1, P()), state)
    restored1, _, _ = ckpt_lib.load(str(tmp_path), abstract_of(state, one))
    assert_trees_equal(restored1, state)
    assert restored1.params["w"].sharding.mesh.devices.size == 1
    # The config went in too.
    meta = json.load(open(tmp_path / "checkpoints" / "7" / "config" / "metadata"))
    assert meta == {"model": {"width": 1}}


def test_retention_keeps_last_k_plus_every_mth(tmp_path, data_dir):
    config = tiny_config(data_dir)
    config.checkpoint.update(keep=2, keep_period=3, async_save=False)
    mesh = sharding.make_mesh({"data": 8, "fsdp": 1, "tensor": 1})
    state = small_state(mesh)
    ckpts = ckpt_lib.Checkpoints(str(tmp_path), config.checkpoint, {})
    for step in range(1, 8):
        ckpts.save(step, state, {"next_index": step})
    ckpts.close()
    assert ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(str(tmp_path))) == [3, 6, 7]


# ----------------------------------------------------------------------------- resume

@pytest.mark.parametrize("layout", [
    {"data": 2, "fsdp": 2, "tensor": 2},
    {"data": 4, "fsdp": 1, "tensor": 2},
    "one device",
])
def test_resume_on_another_layout_matches_uninterrupted_run(layout, reference, data_dir,
                                                            tmp_path, capsys):
    ref_dir, ref = reference
    workdir = resume_copy(ref_dir, 18, tmp_path / "run")
    if layout == "one device":
        result = run_on(tiny_config(data_dir, mesh={"data": -1, "fsdp": 1, "tensor": 1}),
                        workdir, 1)
    else:
        result = run_on(tiny_config(data_dir, mesh=layout), workdir)
    assert "resuming from step 18" in capsys.readouterr().out
    assert result["start_step"] == 18 and int(result["state"].step) == STEPS
    for a, b in zip(jax.tree.leaves(result["state"].params), jax.tree.leaves(ref["state"].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result["train_losses"], ref["train_losses"][-2:], rtol=1e-5)


def test_damaged_latest_checkpoint_falls_back_to_previous(reference, data_dir, tmp_path):
    ref_dir, ref = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir / "checkpoints", workdir / "checkpoints")
    shutil.copy(ref_dir / "metrics.jsonl", workdir / "metrics.jsonl")
    # Truncate the largest array file of the latest step (as a kill mid-copy would).
    files = [os.path.join(d, f) for d, _, fs in os.walk(workdir / "checkpoints" / "20")
             for f in fs]
    largest = max(files, key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(os.path.getsize(largest) // 2)
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "loss": 1.')   # and a half-written metrics line
    # A save killed before its commit leaves orbax's temporary directory: never a step.
    half_written = workdir / "checkpoints" / "25.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(workdir / "checkpoints" / "18", half_written)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train.run(tiny_config(data_dir), str(workdir))
    messages = " | ".join(str(w.message) for w in caught)
    assert "checkpoints/20 failed to restore" in messages, messages
    assert result["start_step"] == 18
    assert_trees_equal(result["state"].params, ref["state"].params)    # same mesh: exact
    # The damaged step was set aside, and the new step 20 replaced it.
    assert os.listdir(workdir / ckpt_lib.CORRUPT_DIR)[0].startswith("20.")
    assert ckpt_lib.saved_steps(str(workdir / "checkpoints")) == [18, 20]
    assert not half_written.exists()      # cleaned up by the manager
    # metrics.jsonl is still one JSON object per line, and a reader sees each step once.
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert losses_by_step(workdir) == losses_by_step(ref_dir)


# ----------------------------------------------------------------------------- bad input

def snapshot(path):
    return sorted((os.path.relpath(os.path.join(d, f), path),
                   os.path.getsize(os.path.join(d, f)), os.path.getmtime(os.path.join(d, f)))
                  for d, _, fs in os.walk(path) for f in fs)


def test_resume_with_other_model_shape_exits_2_naming_the_field(reference, data_dir, capsys):
    ref_dir, _ = reference
    before = snapshot(ref_dir)
    code = train_cmd.main(cli_args({"model.num_layers": 2, "model.width": 32,
                                    "model.mlp_dim": 256, "data.seq_len": 32,
                                    "data.data_dir": data_dir}, ref_dir))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("scaling train: error: checkpoint: model.width is 64 in the "
                          "checkpoint but 32 in --config"), err
    assert "checkpoint.init_from" in err
    assert snapshot(ref_dir) == before      # nothing written or deleted


def test_init_from_restores_params_only_and_names_a_mismatched_parameter(
        reference, data_dir, tmp_path, capsys):
    ref_dir, ref = reference
    # Fine-tuning: parameters from the reference, fresh optimizer and step 0.
    config = tiny_config(data_dir, steps=1, mesh={"data": -1, "fsdp": 1, "tensor": 1})
    config.checkpoint.init_from = str(ref_dir)
    config.optim.lr = 1e-12      # one step that barely moves the parameters
    result = run_on(config, tmp_path / "finetune", 1)
    assert result["start_step"] == 0 and int(result["state"].step) == 1
    for a, b in zip(jax.tree.leaves(result["state"].params), jax.tree.leaves(ref["state"].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)

    # A model whose mlp_dim differs: the error names the parameter; nothing is written.
    workdir = tmp_path / "bad"
    code = train_cmd.main(cli_args({"model.num_layers": 2, "model.width": 64,
                                    "model.mlp_dim": 128, "data.seq_len": 32,
                                    "data.data_dir": data_dir,
                                    "checkpoint.init_from": ref_dir}, workdir))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "parameter blocks/layer_0/mlp/" in err and "(256," in err and "(128," in err, err
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("kind", ["file", "under a file"])
def test_bad_workdir_exits_2(kind, tmp_path, data_dir, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    workdir = blocker if kind == "file" else blocker / "run"
    code = train_cmd.main(cli_args({"data.data_dir": data_dir}, workdir))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("scaling train: error: --workdir:")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_unwritable_workdir_exits_2(tmp_path, data_dir, capsys):
    workdir = tmp_path / "ro"
    workdir.mkdir()
    workdir.chmod(0o555)
    code = train_cmd.main(cli_args({"data.data_dir": data_dir}, workdir))
    assert code == 2 and "not writable" in capsys.readouterr().err
