"""MetricsWriter (JSON lines + TensorBoard), Throughput math against hand-computed numbers,
memory_stats, and the Progress display."""
import glob
import io
import json
import math
import struct
import warnings

import numpy as np
import pytest

from scaling import metrics
from scaling.metrics import MetricsWriter, Throughput


def read_tb_scalars(tb_dir):
    """{tag: [(step, value), ...]} parsed from the TFRecord event files with the protobuf
    classes tensorboardX ships (no TensorFlow / tensorboard needed)."""
    from tensorboardX.proto import event_pb2
    scalars = {}
    for path in sorted(glob.glob(f"{tb_dir}/events.out.tfevents.*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            payload = data[pos + 12:pos + 12 + length]      # 8 length + 4 length-crc
            assert len(payload) == length, "truncated TFRecord"
            pos += 12 + length + 4                          # + 4 payload-crc
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_writer_lines_counters_and_tensorboard(tmp_path):
    thr = Throughput(flops_per_token=100.0, tokens_per_step=64, num_devices=2,
                     peak_flops_per_device=1e9)
    sent = []
    with MetricsWriter(tmp_path, enabled=True) as writer:
        writer.write_event("run_start", model="tiny", params=1234, flops_per_token=100.0)
        for step in (10, 20, 30):
            record = {"step": step, "loss": np.float32(4.0 - step / 10), "lr": 1e-3,
                      **thr.update(step_time_s=0.5, data_wait_s=0.0, num_steps=10)}
            writer.write(record)
            sent.append(record)
        writer.write({"step": 30, "eval_loss": 1.5, "eval_ppl": math.exp(1.5)})
        writer.write_event("run_end", step=30)

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 6
    assert records[0]["event"] == "run_start" and records[0]["params"] == 1234
    assert records[-1] == {"event": "run_end", "step": 30, "time": records[-1]["time"]}
    train = records[1:4]
    assert [r["step"] for r in train] == [10, 20, 30]
    assert [r["loss"] for r in train] == pytest.approx([3.0, 2.0, 1.0])
    # 64 tokens per step, 10 steps per log line; 100 FLOPs per token.
    assert [r["tokens_seen"] for r in train] == [640, 1280, 1920]
    assert [r["flops_seen"] for r in train] == pytest.approx([64000, 128000, 192000])
    assert all(isinstance(r["tokens_seen"], int) for r in train)
    for r in train:
        for key in ("step", "loss", "lr", "step_time_s", "data_wait_s", "tokens_per_s",
                    "tokens_per_s_per_device", "model_tflops_per_device", "mfu", "hfu",
                    "tokens_seen", "flops_seen", "goodput", "time"):
            assert key in r, key
    assert records[4]["eval_loss"] == 1.5

    tb = read_tb_scalars(tmp_path / "tb")
    assert tb["loss"] == [(10, pytest.approx(3.0)), (20, pytest.approx(2.0)),
                          (30, pytest.approx(1.0))]
    assert [s for s, _ in tb["tokens_seen"]] == [10, 20, 30]
    assert tb["eval_loss"] == [(30, 1.5)]
    assert "time" not in tb and "run_start" not in tb and "params" not in tb


def test_writer_appends_after_reopen(tmp_path):
    with MetricsWriter(tmp_path, enabled=True, tensorboard=False) as writer:
        writer.write({"step": 1, "loss": 2.0})
    with MetricsWriter(tmp_path, enabled=True, tensorboard=False) as writer:
        writer.write({"step": 2, "loss": 1.0})
    steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_writer_values_nonfinite_and_disabled(tmp_path):
    import jax.numpy as jnp
    with MetricsWriter(tmp_path, enabled=True, tensorboard=False) as writer:
        writer.write({"step": np.int64(3), "loss": float("nan"), "grad_norm": jnp.float32(0.5),
                      "x": float("inf"), "ok": True})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    record = json.loads(text)
    assert record["step"] == 3 and isinstance(record["step"], int)
    assert record["loss"] is None and record["x"] is None
    assert record["grad_norm"] == 0.5 and record["ok"] is True

    off = tmp_path / "off"
    writer = MetricsWriter(off, enabled=False)
    writer.write({"step": 1, "loss": 1.0})
    writer.close()
    assert not off.exists()


def test_throughput_matches_hand_computation():
    # 1000 tokens per step in 0.5 s (0.4 compute + 0.1 waiting for data), 6e9 FLOPs/token,
    # 2 devices with a 1e13 FLOP/s peak each, XLA counts 4e12 FLOPs per device per step.
    now = [100.0]
    thr = Throughput(flops_per_token=6e9, tokens_per_step=1000, num_devices=2,
                     peak_flops_per_device=1e13, hardware_flops_per_step=4e12,
                     clock=lambda: now[0])
    thr.mark_unproductive(2.0, "compile")
    now[0] = 100.0 + 2.0 + 3 * 0.5 + 0.5         # compile, 3 steps, 0.5 s checkpoint
    thr.mark_unproductive(0.5, "checkpoint")
    out = thr.update(step_time_s=0.4, data_wait_s=0.1, num_steps=3)
    assert out["tokens_per_s"] == pytest.approx(2000.0)            # 1000 / 0.5
    assert out["tokens_per_s_per_device"] == pytest.approx(1000.0)
    assert out["model_tflops_per_device"] == pytest.approx(6.0)      # 6e9 * 1000 / 1e12
    assert out["mfu"] == pytest.approx(0.6)                          # 6e12 / 1e13
    assert out["hfu"] == pytest.approx(0.8)                          # 4e12 / 0.5 / 1e13
    assert out["tokens_seen"] == 3000
    assert out["flops_seen"] == pytest.approx(1.8e13)
    assert out["goodput"] == pytest.approx(3 * 0.4 / 4.0)            # 1.2 s of 4 s
    assert out["badput_compile_s"] == 2.0 and out["badput_checkpoint_s"] == 0.5


def test_throughput_resume_counters_and_mfu_over_one():
    thr = Throughput(flops_per_token=6.0, tokens_per_step=10, num_devices=1,
                     peak_flops_per_device=30.0, start_step=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = thr.update(step_time_s=1.0)                 # 60 FLOP/s on a 30 FLOP/s "peak"
        b = thr.update(step_time_s=1.0)
    assert a["tokens_seen"] == 60 and b["tokens_seen"] == 70
    assert a["mfu"] is None and b["mfu"] is None
    assert a["model_tflops_per_device"] == pytest.approx(60e-12)
    assert len([w for w in caught if "too low" in str(w.message)]) == 1   # warned once
    assert "MFU 2.00 > 1" in a["mfu_warning"] and "device_peak_tflops" in a["mfu_warning"]

    unknown = Throughput(6.0, 10, 1, peak_flops_per_device=0.0)
    assert unknown.update(1.0)["mfu"] is None
    assert "mfu_warning" not in unknown.update(1.0)     # unknown peak: null, no warning


def test_mfu_over_one_names_the_probe_and_calls_back_once(tmp_path):
    seen = []
    source = "CPU fp32 matmul probe, 0 GFLOP/s best of 5 measured 2030-01-01T00:00:00Z"
    # 10 tokens x 6 FLOPs in 1 s = 60 FLOP/s; XLA counts 90 FLOPs per step.
    thr = Throughput(6.0, 10, 1, peak_flops_per_device=30.0, hardware_flops_per_step=90.0,
                     peak_source=source, remedy="Re-measure with `scaling probe-peak`.",
                     on_over_peak=lambda kind, text: seen.append((kind, text)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a callback replaces the warning
        records = [thr.update(step_time_s=1.0) for _ in range(3)]
    assert [kind for kind, _ in seen] == ["HFU", "MFU"]   # once each, not per step
    for r in records:
        assert r["mfu"] is None and r["hfu"] is None
        assert r["mfu_warning"].startswith("MFU 2.00 > 1")   # 60 / 30
        assert r["hfu_warning"].startswith("HFU 3.00 > 1")   # 90 / 30
        assert source in r["mfu_warning"] and "scaling probe-peak" in r["mfu_warning"]
    with MetricsWriter(tmp_path, enabled=True, tensorboard=False) as writer:
        writer.write({"step": 1, **records[0]})
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["mfu"] is None and source in line["mfu_warning"]


def test_memory_stats_cpu_reports_host_rss():
    stats = metrics.memory_stats()
    # The CPU backend reports no device memory; the process surely uses > 10 MB.
    assert set(stats) == {"host_peak_rss_bytes"}
    assert stats["host_peak_rss_bytes"] > 10 * 2**20


def test_progress_plain_lines():
    from scaling.progress import Progress
    out = io.StringIO()        # not a terminal: plain lines
    progress = Progress(200, start_step=0, enabled=True, stream=out)
    progress.update(40, {"loss": 2.3141, "tokens_per_s": 31234.0, "mfu": 0.41,
                         "step_time_s": 0.3, "data_wait_s": 0.0})
    progress.message("eval loss 2.0")
    progress.close()
    lines = out.getvalue().splitlines()
    # 160 steps left at 0.3 s per step = 48 s.
    assert lines[0] == "step 40/200 | loss 2.314 | 31.2k tok/s | mfu 41.0% | eta 48s"
    assert lines[1] == "eval loss 2.0"
    quiet = io.StringIO()
    Progress(10, enabled=False, stream=quiet).update(1, {"loss": 1.0})
    assert quiet.getvalue() == ""


def test_goodput_counts_compile_marked_after_construction():
    # The training loop builds the meter after compiling, then marks the 10 s compile.
    now = [0.0]
    thr = Throughput(1.0, 1, 1, 1.0, clock=lambda: now[0])
    thr.mark_unproductive(10.0, "compile")
    now[0] = 2.0                                      # two 1 s steps
    assert thr.update(step_time_s=1.0, num_steps=2)["goodput"] == pytest.approx(2 / 12)
