"""What a training run logs: metrics.jsonl schema, counters, TensorBoard, report ranking."""
import glob
import json

import jax
import numpy as np
import pytest

from _util import run_on, run_on_one_device, tiny_config
from scaling import pmap_engine
from scaling.commands import report

TRAIN_KEYS = {"step", "loss", "lr", "grad_norm", "param_norm", "step_time_s", "data_wait_s",
              "tokens_per_s", "tokens_per_s_per_device", "model_tflops_per_device", "mfu",
              "hfu", "tokens_seen", "flops_seen", "goodput"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("runs")
    small = tiny_config("gpt2", data_dir, steps=4)
    big = tiny_config("gpt2", data_dir, steps=4, width=64, num_heads=4, mlp_dim=256)
    for config in (small, big):
        config.train.log_every = 2
        config.metrics.tensorboard = True
        config.metrics.device_peak_tflops = 100.0  # a known peak: MFU is defined and < 1
    run_on_one_device(small, root / "small")
    run_on_one_device(big, root / "big")
    return root


def records(run_dir):
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


def test_metrics_schema_and_monotone_counters(two_runs):
    recs = records(two_runs / "small")
    events = {r["event"]: r for r in recs if "event" in r}
    assert {"run_start", "compile", "run_end"} <= set(events)
    start = events["run_start"]
    for key in ("params", "flops_per_token", "flops_per_token_kaplan", "flops_convention",
                "num_devices", "peak_flops_per_device"):
        assert key in start
    assert events["compile"]["compile_time_s"] > 0
    train = [r for r in recs if "loss" in r and "event" not in r]
    assert [r["step"] for r in train] == [2, 4]
    for r in train:
        assert TRAIN_KEYS <= set(r), TRAIN_KEYS - set(r)
        assert 0 < r["mfu"] < 1
        # Tokens seen: steps x global batch (4) x sequence length (32), counted independently.
        assert r["tokens_seen"] == r["step"] * 4 * 32
        assert r["flops_seen"] == pytest.approx(r["tokens_seen"] * start["flops_per_token"])
    assert train[1]["tokens_seen"] > train[0]["tokens_seen"]
    assert any("eval_loss" in r for r in recs)


def test_tensorboard_files_are_written(two_runs):
    assert glob.glob(str(two_runs / "small" / "tb" / "events.out.tfevents.*"))


def test_report_ranks_runs_by_size(two_runs, capsys):
    assert report.main([str(two_runs / "big"), str(two_runs / "small"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_run = {r["run"]: r for r in rows}
    assert by_run["big"]["params"] > by_run["small"]["params"]
    assert by_run["big"]["flops_per_token"] > by_run["small"]["flops_per_token"]
    assert [r["run"] for r in rows] == ["small", "big"]  # smallest model first


@pytest.mark.parametrize("engine, devices", [("jit", 1), ("pmap", 0)])  # 0: all 8
def test_logged_param_norm_is_the_norm_of_the_final_parameters(engine, devices, data_dir,
                                                               tmp_path):
    """param_norm is taken at log steps, outside the step: it must be the state's, in numpy."""
    config = tiny_config("gpt2", data_dir, steps=2)
    config.parallel.engine = engine
    config.train.batch_size = 8
    out = run_on(config, tmp_path, devices)
    state = pmap_engine.unreplicate(out["state"]) if engine == "pmap" else out["state"]
    want = np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64)))
                       for x in jax.tree.leaves(jax.device_get(state.params))))
    logged = [r for r in records(tmp_path) if r.get("step") == 2 and "param_norm" in r]
    assert logged and logged[-1]["param_norm"] == pytest.approx(want, rel=1e-5)
