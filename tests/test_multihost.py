"""Multi-process runs: 2 processes x 2 CPU devices (gloo, 127.0.0.1) through launch/local.sh
train like 1 process x 4 devices; joining a job fails fast with a clear message."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from scaling import distributed

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--config", "experiments/gpt2.py:tiny", "--config.model.num_layers=2",
        "--config.model.width=64", "--config.model.num_heads=8", "--config.model.mlp_dim=256",
        "--config.model.max_len=32", "--config.data.seq_len=32", "--config.train.steps=3",
        "--config.train.batch_size=16", "--config.train.log_every=1",
        "--config.train.eval_steps=1", "--config.metrics.tensorboard=False",
        "--config.metrics.device_peak_tflops=1", "--config.checkpoint.every=0"]
TIMEOUT_S = 300


def _launch(num_processes: int, devices: int, workdir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", distributed.ENV_COORDINATOR,
                        distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID)}
    env.update(PYTHON=sys.executable, SCALING_LAUNCH_TIMEOUT=str(TIMEOUT_S - 20))
    return subprocess.Popen(
        [str(REPO / "launch" / "local.sh"), str(num_processes), str(devices), *ARGS,
         "--workdir", str(workdir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, so a hung run can be killed whole


def _losses(workdir: Path) -> list[float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r and "step" in r]


def test_two_processes_train_like_one(tmp_path):
    runs = {"2x2": _launch(2, 2, tmp_path / "2x2"), "1x4": _launch(1, 4, tmp_path / "1x4")}
    outputs = {}
    try:
        for name, proc in runs.items():
            outputs[name] = proc.communicate(timeout=TIMEOUT_S)[0]
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for name, proc in runs.items():
        assert proc.returncode == 0, f"{name} failed:\n{outputs.get(name, '')[-3000:]}"
    two, one = _losses(tmp_path / "2x2"), _losses(tmp_path / "1x4")
    assert len(two) == len(one) == 3
    assert two == pytest.approx(one, rel=1e-5)
    log1 = (tmp_path / "2x2" / "process_1.log").read_text()
    assert "gpt2-tiny" in (tmp_path / "2x2" / "process_0.log").read_text()
    assert "step 3" not in log1  # only process 0 prints progress and writes metrics
    assert "'data': 4" in outputs["2x2"]  # one 4-device mesh over both processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_coordinator_times_out_with_a_clear_message():
    parallel = ml_collections.ConfigDict(dict(
        coordinator_address=f"127.0.0.1:{_free_port()}", num_processes=2, process_id=1,
        init_timeout_s=1))
    with pytest.raises(TimeoutError, match=r"^parallel\.coordinator_address: no coordinator "
                                           r"answered at 127\.0\.0\.1:\d+ within 1s"):
        distributed.initialize(parallel)


@pytest.mark.parametrize("fields, env, message", [
    (dict(num_processes=2, process_id=0), {}, r"parallel\.coordinator_address: required"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0), {},
     r"parallel\.coordinator_address: 'localhost' is not host:port"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2), {},
     r"parallel\.process_id: 2 is not in \[0, 2\)"),
    (dict(coordinator_address="127.0.0.1:1234"), {"SCALING_PROCESS_ID": "0"},
     r"parallel\.num_processes: required"),
])
def test_bad_distributed_settings(monkeypatch, fields, env, message):
    for key in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
                distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parallel = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0,
                                              process_id=-1, init_timeout_s=5))
    parallel.update(fields)
    with pytest.raises(ValueError, match="^" + message):
        distributed.settings(parallel)


def test_settings_from_environment_and_single_process(monkeypatch):
    parallel = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0,
                                              process_id=-1))
    for key in ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", distributed.ENV_COORDINATOR,
                distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(key, raising=False)
    assert distributed.settings(parallel) is None and distributed.detect_cluster() is None
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "10.0.0.1:8476")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "3")
    assert distributed.settings(parallel) == {
        "coordinator_address": "10.0.0.1:8476", "num_processes": 4, "process_id": 3}
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert distributed.detect_cluster() == "slurm"
