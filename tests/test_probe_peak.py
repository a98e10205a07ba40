"""`scaling probe-peak` end to end, and a run whose MFU exceeds the CPU probe: null MFU, a
warning naming the probe, the cached probe expired, and readers that cope with the null."""
import json
import socket

import pytest

from _util import run_on_one_device, tiny_config
from scaling import cli, hardware
from scaling.commands import report


def test_probe_peak_command_saves_and_prints(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    assert cli.main(["probe-peak", "--repeats", "3", "--size", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["repeats"] == 3 and out["matrix"] == 64
    assert out["min"] <= out["median"] <= out["flops_per_s"]
    assert out["spread"] == pytest.approx((out["flops_per_s"] - out["min"]) / out["flops_per_s"])
    assert out["machine"]["hostname"] == socket.gethostname()
    assert out["cache_file"] == str(tmp_path / "cpu_peak.json")
    cache = json.loads((tmp_path / "cpu_peak.json").read_text())
    assert cache[hardware.cpu_cache_key()]["flops_per_s"] == out["flops_per_s"]
    # The next run reads that entry instead of measuring.
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: 1 / 0)
    assert hardware.cached_cpu_matmul_peak()[0] == out["flops_per_s"]


def test_probe_peak_text_no_save_and_bad_repeats(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    readings = iter([100e9, 80e9])
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: next(readings))
    assert cli.main(["probe-peak", "--repeats", "2", "--no-save"]) == 0
    text = capsys.readouterr().out
    assert "best    100.0 GFLOP/s" in text and "min     80.0 GFLOP/s" in text
    assert "spread  20.0%" in text and "load" in text and socket.gethostname() in text
    assert "not saved" in text and not (tmp_path / "cpu_peak.json").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["probe-peak", "--repeats", "0"])
    assert e.value.code == 2 and "--repeats" in capsys.readouterr().err


def test_run_over_the_probed_peak(tmp_path, monkeypatch, capsys, data_dir):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    # A probe that read absurdly low (1 MFLOP/s): any real step beats it.
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: 1e6)
    config = tiny_config("gpt2", data_dir, steps=2)
    config.metrics.update(device_peak_tflops=0.0, cpu_peak_repeats=1)
    run_on_one_device(config, tmp_path / "run")
    console = capsys.readouterr().out
    assert console.count("warning: MFU") == 1                  # printed once, not per step

    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    train = [r for r in records if "tokens_per_s" in r]
    assert len(train) == 2
    cache_file = str(tmp_path / "cache" / "cpu_peak.json")
    for r in train:
        assert r["mfu"] is None and r["model_tflops_per_device"] > 0
        w = r["mfu_warning"]
        assert "CPU fp32 matmul probe, 0 GFLOP/s" in w and cache_file in w
        assert "measured 20" in w and "scaling probe-peak" in w
    entry, = json.loads(open(cache_file).read()).values()
    assert "MFU > 1" in entry["expired"]                        # the next run measures again

    # Readers: report shows "-" for MFU and one warning naming the cause.
    assert report.main([str(tmp_path / "run"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["median_mfu"] is None
    assert "MFU unknown (null) at 2 log step(s)" in captured.err
    assert "unknown field" not in captured.err
    assert report.main([str(tmp_path / "run")]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    assert " - " in row
