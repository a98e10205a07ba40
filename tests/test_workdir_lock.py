"""One writer per workdir: a second run is refused with one line naming the holder, and a
lock left by a killed process is taken over."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from scaling import workdir_lock
from scaling.commands import train as train_cmd

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
                            text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.stdout.readline().strip() == "locked"
    yield workdir, proc
    proc.kill()
    proc.wait()


def _train_args(workdir, data_dir):
    return ["--config", "experiments/gpt2.py:tiny", "--workdir", str(workdir),
            f"--config.data.data_dir={data_dir}", "--config.train.steps=2",
            "--config.model.num_layers=1", "--config.model.width=32", "--config.model.num_heads=2",
            "--config.model.mlp_dim=64", "--config.data.seq_len=16", "--config.train.batch_size=2",
            "--config.train.eval_steps=1", "--config.metrics.tensorboard=false",
            "--config.parallel.num_devices=1", "--config.parallel.mesh.data=1"]


def test_second_run_is_refused_naming_the_holder_and_writes_nothing(holder, data_dir, capsys):
    workdir, proc = holder
    code = train_cmd.main(_train_args(workdir, data_dir))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and err.startswith("scaling train: error: --workdir:"), err
    assert f"pid {proc.pid} on " in err and "started " in err
    assert sorted(os.listdir(workdir)) == [".lock"]  # no config.json, metrics, checkpoints
    assert json.loads((workdir / ".lock").read_text())["pid"] == proc.pid


def test_lock_of_a_killed_process_is_taken_over(holder, data_dir, capsys):
    workdir, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert train_cmd.main(_train_args(workdir, data_dir)) == 0, capsys.readouterr().err
    assert os.path.isdir(workdir / "checkpoints" / "2")
    # Released at the end: another process may take it now.
    check = subprocess.run([sys.executable, "-c",
                            "import sys; from scaling import workdir_lock; "
                            "workdir_lock.acquire(sys.argv[1])", str(workdir)],
                           env=dict(os.environ, PYTHONPATH=os.getcwd()), capture_output=True)
    assert check.returncode == 0, check.stderr


def test_same_process_may_reacquire(tmp_path):
    workdir_lock.acquire(str(tmp_path))
    workdir_lock.acquire(str(tmp_path))  # a run that ended in an exception, then a resume
    workdir_lock.release(str(tmp_path))
