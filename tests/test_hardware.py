"""Peak table lookup and the cached CPU matmul probe."""
import json

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

    def fake_probe():
        calls.append(1)
        return 160e9

    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", fake_probe)
    n_cpu = len(jax.local_devices(backend="cpu"))       # 8 fake devices share the cores
    first, source1 = hardware.device_peak_flops()
    second, source2 = hardware.device_peak_flops()
    assert calls == [1]
    assert first == second == pytest.approx(160e9 / n_cpu)
    assert "measured now" in source1 and "cached" in source2
    cache = json.loads((tmp_path / "cpu_peak.json").read_text())
    assert list(cache.values())[0]["flops_per_s"] == 160e9
    assert jax.__version__ in list(cache)[0]

    # Another machine (different key) measures again without losing this one's entry.
    monkeypatch.setattr(hardware, "cpu_cache_key", lambda: "other cpu | 64 threads | jax x")
    hardware.device_peak_flops()
    assert calls == [1, 1]
    assert len(json.loads((tmp_path / "cpu_peak.json").read_text())) == 2


def test_real_cpu_probe_is_plausible():
    # Small matrices to stay fast; any real CPU does between 1 and 10,000 GFLOP/s.
    flops = hardware.measure_cpu_matmul_peak(n=256, trials=2, calls_per_trial=2)
    assert 1e9 < flops < 1e13


def test_cpu_probe_refresh_keeps_the_larger(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    readings = iter([200e9, 120e9, 250e9])       # the second reading: a busy machine
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda: next(readings))
    assert hardware.cached_cpu_matmul_peak()[0] == 200e9
    assert hardware.cached_cpu_matmul_peak(refresh=True)[0] == 200e9
    assert hardware.cached_cpu_matmul_peak(refresh=True)[0] == 250e9
    assert hardware.cached_cpu_matmul_peak()[0] == 250e9


def test_cpu_probe_survives_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path))
    (tmp_path / "cpu_peak.json").write_text("{not json")
    monkeypatch.setattr(hardware, "measure_cpu_matmul_peak", lambda: 150e9)
    assert hardware.cached_cpu_matmul_peak()[0] == 150e9
