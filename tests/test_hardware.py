"""Peak table lookup and the cached CPU matmul probe."""
import dataclasses
import datetime
import json
import socket

import jax
import pytest

from scaling import hardware


@pytest.mark.parametrize("kind, tflops, hbm_gib", [
    ("NVIDIA H100 80GB HBM3", 989, 80),
    ("NVIDIA H100 PCIe", 756, 80),
    ("NVIDIA H200", 989, 141),
    ("NVIDIA A100-SXM4-40GB", 312, 40),
    ("NVIDIA A100-SXM4-80GB", 312, 80),
    ("NVIDIA A100 80GB PCIe", 312, 80),
    ("TPU v4", 275, 32),
    ("TPU v5 lite", 197, 16),
    ("TPU v5e", 197, 16),
    ("TPU v5p", 459, 95),
    ("tpu-v4", 275, 32),
])
def test_lookup_by_device_kind(kind, tflops, hbm_gib):
    spec = hardware.lookup_device(kind)
    assert spec.peak_tflops_bf16 == tflops and spec.hbm_bytes == hbm_gib * 2**30
    flops, source = hardware.device_peak_flops(kind)
    assert flops == tflops * 1e12 and spec.source in source


def test_table_has_sources_and_unknown_device():
    assert all(spec.source for spec in hardware.DEVICES.values())
    assert hardware.lookup_device("Quadro RTX 8000") is None
    flops, source = hardware.device_peak_flops("Quadro RTX 8000")
    assert flops == 0.0 and "device_peak_tflops" in source


def test_override_wins():
    assert hardware.device_peak_flops("TPU v4", override_tflops=100.0)[0] == 100e12


def test_cpu_probe_cached_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure(*args, **kwargs):
        calls.append(1)
        return 160e9

    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", fake_measure)
    n_cpu = len(jax.local_devices(backend="cpu"))       # 8 fake devices share the cores
    first, source1 = hardware.device_peak_flops(repeats=3)
    second, source2 = hardware.device_peak_flops(repeats=3)
    assert len(calls) == 3                               # one probe of 3 readings
    assert first == second == pytest.approx(160e9 / n_cpu)
    assert "measured now" in source1 and "measured now" not in source2
    assert str(tmp_path / "cpu_peak.json") in source2 and "best of 3" in source2
    cache = json.loads((tmp_path / "cpu_peak.json").read_text())
    (key, entry), = cache.items()
    assert entry["flops_per_s"] == 160e9 and entry["repeats"] == 3 and entry["spread"] == 0
    assert jax.__version__ in key and socket.gethostname() in key
    assert entry["machine"]["hostname"] == socket.gethostname()
    assert set(entry) >= {"median", "min", "load", "measured_at", "machine"}

    # Another machine (different key) measures again without losing this one's entry.
    monkeypatch.setattr(hardware, "cpu_cache_key", lambda: "other | cpu | 64 threads | jax x")
    hardware.device_peak_flops(repeats=3)
    assert len(calls) == 6
    assert len(json.loads((tmp_path / "cpu_peak.json").read_text())) == 2


def test_cache_key_names_the_host(monkeypatch):
    monkeypatch.setattr(hardware.socket, "gethostname", lambda: "node-a")
    key_a = hardware.cpu_cache_key()
    monkeypatch.setattr(hardware.socket, "gethostname", lambda: "node-b")
    key_b = hardware.cpu_cache_key()
    assert key_a != key_b and key_a.startswith("node-a | ") and key_b.startswith("node-b | ")
    assert key_a.split(" | ", 1)[1] == key_b.split(" | ", 1)[1]   # same CPU, cores, jax


def test_cache_per_host_in_a_shared_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    readings = iter([100e9, 300e9])
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: next(readings))
    monkeypatch.setattr(hardware.socket, "gethostname", lambda: "node-a")
    assert hardware.cached_cpu_matmul_peak(repeats=1)[0] == 100e9
    monkeypatch.setattr(hardware.socket, "gethostname", lambda: "node-b")
    assert hardware.cached_cpu_matmul_peak(repeats=1)[0] == 300e9     # its own probe
    monkeypatch.setattr(hardware.socket, "gethostname", lambda: "node-a")
    assert hardware.cached_cpu_matmul_peak(repeats=1)[0] == 100e9     # cached, not b's


def test_spread_matches_hand_computation():
    # best 200, worst 150: (200 - 150) / 200 = 0.25.
    assert hardware.probe_spread([180e9, 150e9, 200e9]) == pytest.approx(0.25)
    readings = iter([180e9, 150e9, 200e9, 190e9])
    probe = hardware.probe_cpu_peak(4, measure=lambda: next(readings))
    assert probe["flops_per_s"] == 200e9 and probe["min"] == 150e9
    assert probe["median"] == pytest.approx(185e9)                      # (180 + 190) / 2
    assert probe["spread"] == pytest.approx(0.25) and probe["repeats"] == 4
    with pytest.raises(ValueError, match="metrics.cpu_peak_repeats"):
        hardware.probe_cpu_peak(0, measure=lambda: 1.0)


def test_cpu_probe_expires_by_age(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    readings = iter([200e9, 120e9, 250e9])
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: next(readings))
    day0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    peak = lambda days, **kw: hardware.cached_cpu_matmul_peak(          # noqa: E731
        max_age_days=7, repeats=1, now=day0 + datetime.timedelta(days=days), **kw)[0]
    assert peak(0) == 200e9
    assert peak(6.9) == 200e9                    # within 7 days: cached
    assert peak(7.1) == 120e9                    # older: measured again, and replaced
    assert peak(10) == 120e9                     # the new entry is dated day 7.1
    assert peak(10, refresh=True) == 250e9       # refresh measures whatever the age
    entry, = json.loads((tmp_path / "cpu_peak.json").read_text()).values()
    assert entry["measured_at"] == "2030-01-11T00:00:00Z"


def test_expire_cpu_peak_makes_the_next_run_measure(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    readings = iter([50e9, 150e9])
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: next(readings))
    assert not hardware.expire_cpu_peak("nothing cached yet")
    assert hardware.cached_cpu_matmul_peak(repeats=1)[0] == 50e9
    assert hardware.expire_cpu_peak("MFU > 1 in run x")
    entry, = json.loads((tmp_path / "cpu_peak.json").read_text()).values()
    assert entry["expired"] == "MFU > 1 in run x"
    flops, source = hardware.cached_cpu_matmul_peak(repeats=1)
    assert flops == 150e9 and "measured now" in source
    entry, = json.loads((tmp_path / "cpu_peak.json").read_text()).values()
    assert "expired" not in entry


def test_busy_probe_is_warned_about(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: 100e9)
    monkeypatch.setattr(hardware, "system_load", lambda: 1.5)
    with pytest.warns(UserWarning, match="busy.*load 1.50 per core.*scaling probe-peak"):
        hardware.cached_cpu_matmul_peak(repeats=1)
    monkeypatch.setattr(hardware, "system_load", lambda: 0.1)    # the cached entry is busy
    with pytest.warns(UserWarning, match="busy"):
        hardware.cached_cpu_matmul_peak(repeats=1)


def test_real_cpu_probe_is_plausible():
    # Small matrices to stay fast; any real CPU does between 1 and 10,000 GFLOP/s.
    flops = hardware.measure_cpu_matmul_peak(n=256, trials=2, calls_per_trial=2)
    assert 1e9 < flops < 1e13


def test_cpu_probe_survives_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    (tmp_path / "cpu_peak.json").write_text("{not json")
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda *a, **k: 150e9)
    assert hardware.cached_cpu_matmul_peak(repeats=2)[0] == 150e9
    # An entry in the old format (no host in the key, no date) is simply not used.
    (tmp_path / "cpu_peak.json").write_text(json.dumps(
        {hardware.cpu_cache_key(): {"flops_per_s": 1e9, "measured_at": "2026-01-01T00:00:00"}}))
    assert hardware.cached_cpu_matmul_peak(repeats=1)[0] == 150e9


# ------------------------------------------------------------------ bandwidths and sources

REQUIRED = ("p100", "v100", "a100-40", "a100-80", "h100", "h200", "tpu-v3", "tpu-v4",
            "tpu-v5e", "tpu-v5p")


def test_every_required_device_has_every_field_and_a_source():
    for name in REQUIRED:
        spec = hardware.DEVICES[name]
        for field in dataclasses.fields(spec):
            value = getattr(spec, field.name)
            if field.name == "inter_node_bw" and value is None:
                # allowed only where the source says why
                assert "no DCN" in spec.source or "no reference" in spec.source, name
                continue
            assert value not in (None, ""), (name, field.name)
        assert spec.source and spec.interconnect
        assert spec.hbm_bw > 0 and spec.intra_node_bw > 0 and spec.devices_per_node >= 1


def test_bandwidth_units_are_bytes_per_second_one_direction():
    GB = 1e9
    # NVLink 4: the datasheet's 900 GB/s is both directions.
    assert hardware.DEVICES["h100"].intra_node_bw == 450 * GB
    assert hardware.DEVICES["v100"].intra_node_bw == 150 * GB
    assert hardware.DEVICES["a100-80"].intra_node_bw == 300 * GB
    # DGX H100: one 400 Gb/s NDR port per GPU = 50 GB/s; Megatron's DGX-2H: 8 x 100 Gb/s
    # EDR per 16 GPUs = 6.25 GB/s per GPU.
    assert hardware.DEVICES["h100"].inter_node_bw == 50 * GB
    assert hardware.DEVICES["v100"].inter_node_bw == 6.25 * GB
    # TPU v5p: 1200 GB/s bidirectional ICI; DCN 50 Gb/s per chip.
    assert hardware.DEVICES["tpu-v5p"].intra_node_bw == 600 * GB
    assert hardware.DEVICES["tpu-v5p"].inter_node_bw == 6.25 * GB
    for spec in hardware.DEVICES.values():
        # HBM > intra-node link > inter-node link, and all within physical ranges.
        assert 1e11 < spec.hbm_bw < 1e13, spec.name
        assert 1e10 < spec.intra_node_bw < spec.hbm_bw, spec.name
        if spec.inter_node_bw is not None:
            assert 1e9 < spec.inter_node_bw < spec.intra_node_bw, spec.name


def test_peaks_by_precision():
    v100 = hardware.DEVICES["v100"]
    assert v100.peak_flops("fp16") == 125e12 and v100.peak_flops("fp32") == 15.7e12
    with pytest.raises(ValueError, match="no bf16"):
        v100.peak_flops("bf16")
    with pytest.raises(ValueError, match="no published fp32"):
        hardware.DEVICES["tpu-v3"].peak_flops("fp32")
    assert hardware.DEVICES["tpu-v3"].peak_flops("bf16") == 123e12
    assert hardware.lookup_device("Tesla V100-SXM2-32GB").name == "v100"
    assert hardware.lookup_device("TPU v3").name == "tpu-v3"
    for name, (usd, source) in hardware.CLOUD_PRICES.items():
        assert name in hardware.DEVICES and 0.5 < usd < 10 and source
