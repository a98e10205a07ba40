"""Fault injection at deterministic points: damaged checkpoints, a second writer, a failed
write, an optimizer that changed on resume (issue: reliability items 1-5).

Every fault is made by the test itself (bytes written, files removed, a real second
process holding the workdir, a full disk or a file-size limit), never by timing luck.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scaling import checkpoint as ckpt_lib
from scaling.commands import train as train_cmd

from test_checkpoint import cli_args, tiny_overrides

pytestmark = pytest.mark.usefixtures("compile_cache")  # same programs again and again

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(data_dir, workdir, steps, every=2, **more):
    return train_cmd.main(cli_args(tiny_overrides(data_dir, steps=steps, every=every, **more),
                                   workdir))


def _records(workdir):
    out = {}
    for line in open(workdir / "metrics.jsonl"):
        r = json.loads(line)
        if "nonfinite_steps" in r:
            out[r["step"]] = r
    return out


def _steps(workdir):
    return ckpt_lib.saved_steps(ckpt_lib.checkpoint_dir(str(workdir)))


def _corrupt(workdir):
    return sorted(os.listdir(workdir / ckpt_lib.CORRUPT_DIR))


# ----------------------------------------------------------------------------- 1. silent damage

def test_random_bytes_in_array_data_are_caught_and_the_previous_checkpoint_used(
        data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=4) == 0
    losses = {s: r["loss"] for s, r in _records(workdir).items()}
    files = [os.path.join(d, f) for d, _, fs in os.walk(workdir / "checkpoints" / "4" / "state")
             for f in fs]
    largest = max(files, key=os.path.getsize)
    size = os.path.getsize(largest)
    with open(largest, "r+b") as f:  # 4 KiB of random bytes in the middle (or all of it)
        f.seek(max(size // 2 - 2048, 0))
        f.write(np.random.default_rng(0).bytes(min(4096, size)))
    capsys.readouterr()
    with pytest.warns(UserWarning, match="checkpoints/4 failed to restore"):
        assert _train(data_dir, workdir, steps=6) == 0
    out = capsys.readouterr().out
    assert "resuming from step 2" in out, out
    assert _corrupt(workdir)[0].startswith("4.") and _steps(workdir) == [4, 6]
    after = _records(workdir)
    assert all(np.isfinite(after[s]["loss"]) for s in after)
    # Steps 3-4 were replayed from step 2's checkpoint: the same losses as the first time.
    assert [after[s]["loss"] for s in (3, 4)] == [losses[3], losses[4]]


def test_array_that_differs_from_its_fingerprint_is_refused(data_dir, tmp_path):
    """Arrays that read back fine but are not what was written (here: the record of what
    was written is changed instead, which is the same test of the check)."""
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=4) == 0
    meta = workdir / "checkpoints" / "4" / "data" / "metadata"
    data = json.loads(meta.read_text())
    name = next(n for n in data["fingerprints"] if n.startswith("params/"))
    data["fingerprints"][name] = (data["fingerprints"][name] + 1) % 2 ** 32
    meta.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="integrity check failed: 1 array"):
        assert _train(data_dir, workdir, steps=6) == 0
    assert _corrupt(workdir)[0].startswith("4.") and _steps(workdir) == [4, 6]


def test_no_update_since_the_last_checkpoint_saves_nothing_and_prunes_nothing(
        data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    # Steps 3-6 are all non-finite (skipped): the saves due at 4 and 6 would hold step 2's
    # parameters, and with keep=1 they would delete step 2's checkpoint.
    assert _train(data_dir, workdir, steps=6, **{"checkpoint.keep": 1, "train.poison_step": 3,
                                                 "train.poison_steps": 4}) == 0
    out = capsys.readouterr().out
    assert "step 4: no update applied since the checkpoint of step 2; not saving" in out, out
    assert _steps(workdir) == [2]


# ----------------------------------------------------------------------------- 2. two writers

HOLDER = textwrap.dedent("""
    import sys, time
    from scaling import workdir_lock
    workdir_lock.acquire(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """A live process holding tmp_path/run's lock (started and confirmed before the test)."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.readline().strip() == "locked"
    yield workdir, proc
    proc.kill()
    proc.wait()


def test_second_writer_is_refused_naming_the_holder_and_writes_nothing(holder, data_dir, capsys):
    workdir, proc = holder
    assert _train(data_dir, workdir, steps=2) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("scaling train: error: --workdir:"), err
    assert f"pid {proc.pid} on " in err and "started " in err
    assert sorted(os.listdir(workdir)) == [".lock"]  # no config.json, metrics, checkpoints


def test_lock_of_a_killed_writer_is_taken_over_and_released_at_the_end(holder, data_dir):
    workdir, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _train(data_dir, workdir, steps=2) == 0 and _steps(workdir) == [2]
    check = subprocess.run([sys.executable, "-c",
                            "import sys; from scaling import workdir_lock; "
                            "workdir_lock.acquire(sys.argv[1])", str(workdir)],
                           env=dict(os.environ, PYTHONPATH=REPO), capture_output=True)
    assert check.returncode == 0, check.stderr


def test_same_process_may_take_its_own_lock_again(tmp_path):
    from scaling import workdir_lock
    workdir_lock.acquire(str(tmp_path))
    workdir_lock.acquire(str(tmp_path))  # a run that ended in an exception, then a resume
    workdir_lock.release(str(tmp_path))


# ----------------------------------------------------------------------------- 3. skipped damage

@pytest.mark.parametrize("damage", ["remove state/_METADATA", "empty the directory"])
def test_unreadable_latest_is_moved_aside_and_its_step_saved_again(damage, data_dir, tmp_path):
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=4) == 0
    latest = workdir / "checkpoints" / "4"
    if damage == "remove state/_METADATA":
        os.remove(latest / "state" / "_METADATA")
    else:
        for entry in os.listdir(latest):
            path = latest / entry
            shutil.rmtree(path) if path.is_dir() else os.remove(path)
    with pytest.warns(UserWarning):
        assert _train(data_dir, workdir, steps=4) == 0  # the same command again
    assert _corrupt(workdir)[0].startswith("4.")
    assert _steps(workdir) == [2, 4]
    assert os.path.isfile(latest / "state" / "_METADATA")  # step 4 written afresh


def test_every_checkpoint_unreadable_is_one_line_exit_2(data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=4) == 0
    for step in (2, 4):
        os.remove(workdir / "checkpoints" / str(step) / "state" / "_METADATA")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="unreadable"):
        assert _train(data_dir, workdir, steps=6) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("scaling train: error: checkpoint: none of the "
                                              "checkpoints in"), err


# ----------------------------------------------------------------------------- 4. failed writes

def test_full_disk_stops_before_the_save_with_one_line_and_exit_3(data_dir, tmp_path,
                                                                  monkeypatch, capsys):
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=2) == 0
    capsys.readouterr()
    real = shutil.disk_usage

    def full(path):  # the disk fills up after the first checkpoint: 1 kB left
        return real(path)._replace(free=1000)

    monkeypatch.setattr(ckpt_lib.shutil, "disk_usage", full)
    code = _train(data_dir, workdir, steps=6)
    err = capsys.readouterr().err.strip()
    assert code == 3 and "\n" not in err, err
    assert err.startswith("scaling train: error: checkpoint: not enough space to save step 4 "
                          f"in {workdir}/checkpoints: 0.0 MB free, about "), err
    assert "the checkpoint of step 2 is kept" in err
    assert _steps(workdir) == [2]
    assert max(_records(workdir)) == 4  # stopped at the save, not at the end


FILE_SIZE_LIMIT = textwrap.dedent("""
    import resource, runpy, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    limit = int(sys.argv.pop(1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv[0:1] = ["scaling", "train"]
    runpy.run_module("scaling", run_name="__main__")
""")


def test_failed_background_write_stops_the_run_with_exit_3(data_dir, tmp_path):
    """Every file over 100 kB fails to write: the save of step 4 fails in the background."""
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=2) == 0
    args = cli_args(tiny_overrides(data_dir, steps=12, every=4), workdir)
    proc = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, "100000", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=REPO))
    # The one line; orbax's tensorstore callbacks may print tracebacks of their own around
    # it (an upstream teardown race), possibly on the same output line.
    start = proc.stderr.find("scaling train: error:")
    line = proc.stderr[start:].split("\n", 1)[0]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stderr.count("scaling train: error:") == 1, proc.stderr[-3000:]
    assert line.startswith(
        f"scaling train: error: checkpoint: writing step 4 to {workdir}/checkpoints failed"), \
        proc.stderr[-3000:]
    assert "the checkpoint of step 2 is kept" in line
    assert _steps(workdir) == [2]
    assert max(_records(workdir)) < 12  # stopped at a step boundary, not at the end


# ----------------------------------------------------------------------------- 5. optimizer

def test_optimizer_structure_change_is_refused_before_anything_is_written(data_dir, tmp_path,
                                                                          capsys):
    workdir = tmp_path / "run"
    assert _train(data_dir, workdir, steps=2) == 0
    config_before = (workdir / "config.json").read_bytes()
    metrics_before = (workdir / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert _train(data_dir, workdir, steps=4, **{"optim.clip_norm": 0.0}) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "optim.clip_norm 1.0 -> 0.0" in err and "init_from" in err, err
    assert "move" not in err and "delete" not in err  # readable checkpoints are not blamed
    assert (workdir / "config.json").read_bytes() == config_before
    assert (workdir / "metrics.jsonl").read_bytes() == metrics_before
