"""Faults: SIGKILL then resume is bitwise exact, SIGTERM saves and exits 0, NaN injection.

The kill tests run `scaling train` as a real subprocess (python -m scaling train) on the
same 8 fake CPU devices as the in-process reference run.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from scaling import checkpoint as ckpt_lib
from scaling import train
from scaling.commands import train as train_cmd

from test_checkpoint import STEPS, cli_args, losses_by_step, tiny_config, tiny_overrides

pytestmark = pytest.mark.usefixtures("compile_cache")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """The uninterrupted 20-step run, in this process."""
    workdir = tmp_path_factory.mktemp("faults_reference")
    return workdir, train.run(tiny_config(data_dir), str(workdir))


def start(overrides, workdir, cache_dir):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2")
    return subprocess.Popen([sys.executable, "-m", "scaling", "train",
                             *cli_args(overrides, workdir)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_logged_step(workdir) -> int:
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            steps = [json.loads(line).get("step") for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        return 0
    return max((s for s in steps if isinstance(s, int)), default=0)


def wait_for(proc, condition, timeout=240.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def abstract_of(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)


def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_identical(
        reference, data_dir, compile_cache, tmp_path):
    ref_dir, ref = reference
    workdir = tmp_path / "run"
    overrides = tiny_overrides(data_dir, every=5)
    kill_at = random.Random().randint(6, 15)      # any step after the first checkpoint
    proc = start(overrides, workdir, compile_cache)
    # After step kill_at AND a committed checkpoint (async commits may lag a few steps).
    reached = wait_for(proc, lambda: last_logged_step(workdir) >= kill_at and ckpt_lib.saved_steps(
        ckpt_lib.checkpoint_dir(str(workdir))))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert reached and proc.returncode == -signal.SIGKILL, (kill_at, proc.returncode, err[-2000:])
    killed_at = last_logged_step(workdir)
    assert killed_at < STEPS, "the run finished before the kill"

    resumed = start(overrides, workdir, compile_cache)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    restarted = int(out.split("resuming from step ")[1].split()[0])
    assert 5 <= restarted <= killed_at and restarted % 5 == 0, (restarted, killed_at)

    state, data_state, step = ckpt_lib.load(str(workdir), abstract_of(ref["state"]))
    assert step == STEPS and data_state == {"next_index": STEPS}
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                            jax.tree.leaves(ref["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg=f"{jax.tree_util.keystr(path)} (killed at step "
                                              f"{killed_at}, resumed from {restarted})")
    assert losses_by_step(workdir) == losses_by_step(ref_dir)   # every step, data order too
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line), dict)


def test_sigterm_finishes_the_step_saves_and_exits_0(data_dir, compile_cache, tmp_path):
    workdir = tmp_path / "run"
    overrides = tiny_overrides(data_dir, every=0)     # no periodic saves: only the signal's
    proc = start(overrides, workdir, compile_cache)
    reached = wait_for(proc, lambda: last_logged_step(workdir) >= 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert reached and proc.returncode == 0, err[-3000:]
    steps = ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(str(workdir)))
    stopped = last_logged_step(workdir)
    assert 3 <= stopped < STEPS and steps == [stopped], (steps, stopped)
    assert f"stopped at step {stopped}; resume with: scaling train --config " in out, out
    assert f"--workdir {workdir}" in out


def test_nonfinite_skip_counts_the_step_and_keeps_training(reference, data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.train.poison_step = 3
    result = train.run(config, str(tmp_path))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_records = {r["step"]: r for r in records if "nonfinite_steps" in r}
    assert train_records[3]["nonfinite_steps"] == 1 and train_records[3]["loss"] is None
    assert sum(r["nonfinite_steps"] for r in train_records.values()) == 1
    assert int(result["state"].step) == STEPS
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result["state"].params))
    # Steps 1-2 are the reference's; the skipped update makes the rest differ.
    ref_losses = losses_by_step(reference[0])
    assert [train_records[s]["loss"] for s in (1, 2)] == [ref_losses[1], ref_losses[2]]
    assert train_records[4]["loss"] != ref_losses[4]


def test_nonfinite_stop_names_the_step_and_keeps_last_good_checkpoint(data_dir, tmp_path,
                                                                       capsys):
    workdir = tmp_path / "run"
    # Logs every 4 steps, so the error (raised at step 4's log) must find step 3 itself;
    # the periodic save at step 4 must not happen.
    code = train_cmd.main(cli_args(tiny_overrides(
        data_dir, every=2, **{"train.log_every": 4, "train.poison_step": 3,
                              "train.nonfinite": "stop"}), workdir))
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err, err
    assert err.startswith("scaling train: error: step 3: non-finite loss or gradients"), err
    assert "latest checkpoint: step 2" in err
    assert ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(str(workdir))) == [2]


def test_nonfinite_skip_says_each_skipped_step(data_dir, tmp_path, capsys):
    code = train_cmd.main(cli_args(tiny_overrides(
        data_dir, every=0, **{"train.log_every": 4, "train.poison_step": 3,
                              "train.poison_steps": 2}), tmp_path / "run"))
    out = capsys.readouterr().out
    assert code == 0
    assert "step 3: non-finite loss or gradients; update skipped (1 in a row)" in out, out
    assert "step 4: non-finite loss or gradients; update skipped (2 in a row)" in out, out
    assert "step 5: non-finite" not in out


def test_too_many_skipped_steps_in_a_row_stop_the_run(data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main(cli_args(tiny_overrides(
        data_dir, every=2, **{"train.log_every": 4, "train.poison_step": 3,
                              "train.poison_steps": 10, "train.max_skipped_steps": 2}), workdir))
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err, err
    assert err.startswith("scaling train: error: step 5: non-finite loss or gradients"), err
    assert "after 3 such steps in a row (train.max_skipped_steps=2)" in err
    # The save due at step 4 was left out: no update was applied since step 2's.
    assert "latest checkpoint: step 2" in err
    assert ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(str(workdir))) == [2]
