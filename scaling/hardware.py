"""Accelerator peak FLOP/s and memory, and a measured peak for CPUs.

MFU divides the model FLOPs a run achieves by the hardware's peak. For accelerators the peak
is the vendor's *dense* bf16 figure (datasheets often headline the 2:4-sparse number, which
is twice as large; the table below halves those; P100 and V100 have no bf16, so their 16-bit
peak is fp16's). The table also holds fp16/fp32 peaks, HBM bandwidth and the interconnect
per mesh level (bytes/s, one direction, per device), each entry with its sources. For CPUs
there is no honest datasheet number for what XLA can reach, so `device_peak_flops` measures
it: a jitted fp32 matmul timed on all of this process's threads, several times (the best
reading is the peak; the spread and the system load say how far to trust it), cached per host in
`$SCALING_CACHE_DIR/cpu_peak.json` (default `~/.cache/scaling/`) and measured again when the
entry is older than `metrics.cpu_peak_max_age_days` or a run achieved more than it (MFU > 1).
`scaling probe-peak` measures it by hand.

HBM sizes: the datasheets' "GB" for HBM capacities are binary (80 GB = 5 stacks x 16 GiB), so
they are stored as GiB x 2**30. The runtime reserves part of it; `memory_stats()['bytes_limit']`
on the device is what a program can really allocate.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import socket
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

GiB = 2**30
GB = 1e9                        # bandwidths: decimal, as datasheets print them
Gbit = 1e9 / 8


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """One accelerator: peaks, memory and the links a mesh axis can run over.

    Bandwidths are bytes/s, *unidirectional, per device* (datasheets often print the
    bidirectional total: NVLink 4's "900 GB/s" is 450 GB/s each way). `intra_node_bw` is the
    fast domain (NVLink/NVSwitch within a node; TPU ICI within a slice, where the node is the
    pod); `inter_node_bw` is this device's share of the node's network (InfiniBand or
    Ethernet NICs / devices per node; TPU data-center network), None where no reference
    deployment publishes one. `source` names where every number comes from.
    """
    name: str                   # short key, e.g. "h100"
    peak_tflops_bf16: float     # dense 16-bit tensor/MXU peak per chip: bf16, or fp16 on
                                # chips without bf16 (P100, V100; see `mixed_precision`)
    hbm_bytes: int              # HBM capacity per chip as the datasheet states it
    source: str                 # where the numbers come from
    peak_tflops_fp16: float     # dense fp16 peak (0: no fp16 datapath, TPUs)
    peak_tflops_fp32: float     # fp32 without tensor cores/TF32 (0: not published, TPUs)
    hbm_bw: float               # HBM bandwidth, bytes/s
    intra_node_bw: float        # NVLink / ICI, bytes/s per device per direction
    inter_node_bw: float | None  # IB / Ethernet / DCN share, bytes/s per device per direction
    devices_per_node: int       # size of the intra-node domain (DGX: 8; TPU: pod size)
    interconnect: str           # the links, in words
    mixed_precision: str = "bf16"   # the 16-bit format the chip trains with

    @property
    def peak_flops_bf16(self) -> float:
        return self.peak_tflops_bf16 * 1e12

    def peak_flops(self, precision: str) -> float:
        """Dense peak FLOP/s in 'bf16', 'fp16' or 'fp32'; ValueError where the chip has none."""
        if precision == "bf16" and self.mixed_precision != "bf16":
            raise ValueError(f"precision: {self.name} has no bf16; use "
                             f"{self.mixed_precision} or fp32")
        tflops = {"bf16": self.peak_tflops_bf16, "fp16": self.peak_tflops_fp16,
                  "fp32": self.peak_tflops_fp32}.get(precision)
        if tflops is None:
            raise ValueError(f"precision: {precision!r} is not one of bf16, fp16, fp32")
        if not tflops:
            raise ValueError(f"precision: no published {precision} peak for {self.name}")
        return tflops * 1e12


_DGX_A100 = "NVIDIA DGX A100 datasheet: 8 x 200 Gb/s HDR InfiniBand (one per GPU)"
_DGX_H100 = "NVIDIA DGX H100/H200 datasheet: 8 x 400 Gb/s NDR ConnectX-7 (one per GPU)"

DEVICES: dict[str, DeviceSpec] = {
    spec.name: spec
    for spec in [
        # NVIDIA Tesla P100 datasheet, SXM2 (NVLink) module: FP16 21.2, FP32 10.6 TFLOPS;
        # 16 GB HBM2 at 732 GB/s; NVLink 1.0, 4 links, 160 GB/s bidirectional. No bf16, no
        # tensor cores. DGX-1 (P100) datasheet: 4 x 100 Gb/s EDR InfiniBand per 8 GPUs.
        DeviceSpec("p100", 21.2, 16 * GiB,
                   "NVIDIA Tesla P100 datasheet (SXM2: FP16 21.2, FP32 10.6 TFLOPS, 732 GB/s, "
                   "NVLink 160 GB/s bidirectional); NVIDIA DGX-1 datasheet (4 x 100 Gb/s EDR "
                   "IB per 8 GPUs)",
                   peak_tflops_fp16=21.2, peak_tflops_fp32=10.6, hbm_bw=732 * GB,
                   intra_node_bw=160 * GB / 2, inter_node_bw=4 * 100 * Gbit / 8,
                   devices_per_node=8, interconnect="NVLink 1 hybrid cube mesh; EDR IB",
                   mixed_precision="fp16"),
        # NVIDIA Tesla V100 datasheet, SXM2/SXM3 32 GB: tensor 125 TFLOPS (fp16), FP32 15.7;
        # HBM2 900 GB/s; NVLink 2.0, 300 GB/s bidirectional. Node as in Megatron-LM
        # (Shoeybi et al. 2019, section 5): DGX-2H, 16 GPUs on NVSwitch, "100 GB/sec of
        # interconnect bandwidth between servers using 8 InfiniBand adapters per server"
        # (8 x 100 Gb/s EDR; a DGX-1V has 4 per 8 GPUs: the same 6.25 GB/s per GPU).
        DeviceSpec("v100", 125.0, 32 * GiB,
                   "NVIDIA Tesla V100 datasheet (SXM2 32GB: tensor 125, FP32 15.7 TFLOPS, "
                   "900 GB/s, NVLink 300 GB/s bidirectional); NVIDIA DGX-2 datasheet and "
                   "Shoeybi et al. 2019 section 5 (8 x 100 Gb/s EDR IB per 16 GPUs)",
                   peak_tflops_fp16=125.0, peak_tflops_fp32=15.7, hbm_bw=900 * GB,
                   intra_node_bw=300 * GB / 2, inter_node_bw=8 * 100 * Gbit / 16,
                   devices_per_node=16, interconnect="NVLink 2 / NVSwitch; EDR IB",
                   mixed_precision="fp16"),
        # NVIDIA H100 Tensor Core GPU datasheet: SXM BF16 1,979 TFLOPS "with sparsity"; 80 GB
        # HBM3 at 3.35 TB/s; FP32 67 TFLOPS; NVLink 900 GB/s (bidirectional total).
        DeviceSpec("h100", 989.0, 80 * GiB,
                   "NVIDIA H100 datasheet, H100 SXM (1979 sparse / 2; FP32 67 TFLOPS; "
                   "3.35 TB/s; NVLink 900 GB/s bidirectional); " + _DGX_H100,
                   peak_tflops_fp16=989.0, peak_tflops_fp32=67.0, hbm_bw=3350 * GB,
                   intra_node_bw=900 * GB / 2, inter_node_bw=400 * Gbit,
                   devices_per_node=8, interconnect="NVLink 4 / NVSwitch; NDR IB"),
        # Same datasheet, PCIe column: BF16 1,513 TFLOPS with sparsity; 80 GB HBM2e at
        # 2 TB/s; FP32 51; NVLink bridge 600 GB/s (pairs of cards). No reference
        # multi-node deployment: inter-node None.
        DeviceSpec("h100-pcie", 756.0, 80 * GiB,
                   "NVIDIA H100 datasheet, H100 PCIe (1513 sparse / 2; FP32 51 TFLOPS; 2 TB/s;"
                   " NVLink bridge 600 GB/s bidirectional); no reference cluster network",
                   peak_tflops_fp16=756.0, peak_tflops_fp32=51.0, hbm_bw=2000 * GB,
                   intra_node_bw=600 * GB / 2, inter_node_bw=None, devices_per_node=2,
                   interconnect="NVLink bridge (pairs); PCIe"),
        # NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity (the H100 SXM's
        # compute), 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s.
        DeviceSpec("h200", 989.0, 141 * GiB,
                   "NVIDIA H200 datasheet, H200 SXM (1979 sparse / 2; FP32 67 TFLOPS; "
                   "4.8 TB/s; NVLink 900 GB/s bidirectional); " + _DGX_H100,
                   peak_tflops_fp16=989.0, peak_tflops_fp32=67.0, hbm_bw=4800 * GB,
                   intra_node_bw=900 * GB / 2, inter_node_bw=400 * Gbit,
                   devices_per_node=8, interconnect="NVLink 4 / NVSwitch; NDR IB"),
        # NVIDIA A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense (624 sparse); FP32
        # 19.5; 40 GB HBM2 at 1,555 GB/s or 80 GB HBM2e at 2,039 GB/s (SXM); NVLink 3,
        # 600 GB/s bidirectional.
        DeviceSpec("a100-40", 312.0, 40 * GiB,
                   "NVIDIA A100 datasheet, A100 40GB SXM (312 dense; FP32 19.5 TFLOPS; "
                   "1,555 GB/s; NVLink 600 GB/s bidirectional); " + _DGX_A100,
                   peak_tflops_fp16=312.0, peak_tflops_fp32=19.5, hbm_bw=1555 * GB,
                   intra_node_bw=600 * GB / 2, inter_node_bw=200 * Gbit,
                   devices_per_node=8, interconnect="NVLink 3 / NVSwitch; HDR IB"),
        DeviceSpec("a100-80", 312.0, 80 * GiB,
                   "NVIDIA A100 datasheet, A100 80GB SXM (312 dense; FP32 19.5 TFLOPS; "
                   "2,039 GB/s; NVLink 600 GB/s bidirectional); " + _DGX_A100,
                   peak_tflops_fp16=312.0, peak_tflops_fp32=19.5, hbm_bw=2039 * GB,
                   intra_node_bw=600 * GB / 2, inter_node_bw=200 * Gbit,
                   devices_per_node=8, interconnect="NVLink 3 / NVSwitch; HDR IB"),
        # TPU v2: Jouppi et al. 2020, "A Domain-Specific Supercomputer for Training Deep
        # Neural Networks" (CACM), Table 3 (as recalled, not re-checked here): 46 TFLOPS
        # bf16 per chip (Cloud's 180 per 4-chip board is 45), 16 GiB HBM at 700 GB/s, 4 ICI
        # links of 496 Gb/s; 256-chip pod, 2D torus. No DCN: one pod per job then.
        DeviceSpec("tpu-v2", 45.0, 16 * GiB,
                   "Jouppi et al. 2020 CACM 'A Domain-Specific Supercomputer for Training "
                   "DNNs' Table 3 (45-46 TFLOPS, 16 GiB, 700 GB/s, 4 ICI links x 496 Gb/s; "
                   "recalled, approximate); Cloud TPU v2 docs (256-chip pod); no DCN figure",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=700 * GB,
                   intra_node_bw=4 * 496 * Gbit, inter_node_bw=None, devices_per_node=256,
                   interconnect="ICI 2D torus"),
        # Google Cloud TPU docs, "TPU v3": 123 TFLOPS bf16 per chip, 32 GiB HBM2 at 900 GBps;
        # 1024-chip pod, 2D torus, all-reduce bandwidth per pod 340 TB/s (/ 1024 chips =
        # 332 GB/s per chip: the same derivation gives v5e's documented 400/2 = 200).
        DeviceSpec("tpu-v3", 123.0, 32 * GiB,
                   "Google Cloud TPU v3 documentation (123 TFLOPS, 32 GiB, 900 GBps; ICI = "
                   "all-reduce bandwidth per pod 340 TB/s / 1024 chips); no DCN figure",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=900 * GB,
                   intra_node_bw=340e12 / 1024, inter_node_bw=None, devices_per_node=1024,
                   interconnect="ICI 2D torus"),
        # Google Cloud TPU docs, "TPU v4" system architecture: 275 TFLOPs bf16 per chip, 32 GiB
        # HBM2 at 1200 GBps; 4096-chip pod; all-reduce bandwidth per pod 1.1 PB/s (/ 4096).
        DeviceSpec("tpu-v4", 275.0, 32 * GiB,
                   "Google Cloud TPU v4 documentation (275 TFLOPS, 32 GiB, 1200 GBps; ICI = "
                   "all-reduce bandwidth per pod 1.1 PB/s / 4096 chips); no DCN figure",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=1200 * GB,
                   intra_node_bw=1.1e15 / 4096, inter_node_bw=None, devices_per_node=4096,
                   interconnect="ICI 3D torus (optical switches)"),
        # Google Cloud TPU docs, "TPU v5e": 197 TFLOPs bf16 per chip, 16 GiB HBM2 at 819 GBps,
        # bidirectional ICI 400 GBps per chip; 8 chips per host with 2 x 100 Gbps NICs.
        DeviceSpec("tpu-v5e", 197.0, 16 * GiB,
                   "Google Cloud TPU v5e documentation (197 TFLOPS, 16 GiB, 819 GBps, "
                   "bidirectional ICI 400 GBps per chip, 2 x 100 Gbps NIC per 8-chip host)",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=819 * GB,
                   intra_node_bw=400 * GB / 2, inter_node_bw=2 * 100 * Gbit / 8,
                   devices_per_node=256, interconnect="ICI 2D torus; DCN"),
        # Google Cloud TPU docs, "TPU v5p": 459 TFLOPs bf16 per chip, 95 GiB HBM2e at 2765 GBps,
        # bidirectional ICI 1200 GBps per chip, DCN 50 Gbps per chip.
        DeviceSpec("tpu-v5p", 459.0, 95 * GiB,
                   "Google Cloud TPU v5p documentation (459 TFLOPS, 95 GiB, 2765 GBps, "
                   "bidirectional ICI 1200 GBps per chip, DCN 50 Gbps per chip)",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=2765 * GB,
                   intra_node_bw=1200 * GB / 2, inter_node_bw=50 * Gbit,
                   devices_per_node=8960, interconnect="ICI 3D torus; DCN"),
        # Google Cloud TPU docs, "TPU v6e" (Trillium): 918 TFLOPs bf16 per chip, 32 GiB HBM at
        # 1638 GBps, bidirectional ICI 800 GBps per chip.
        DeviceSpec("tpu-v6e", 918.0, 32 * GiB,
                   "Google Cloud TPU v6e documentation (918 TFLOPS, 32 GB, 1638 GBps, "
                   "bidirectional ICI 800 GBps per chip); DCN not taken from it",
                   peak_tflops_fp16=0.0, peak_tflops_fp32=0.0, hbm_bw=1638 * GB,
                   intra_node_bw=800 * GB / 2, inter_node_bw=None, devices_per_node=256,
                   interconnect="ICI 2D torus; DCN"),
    ]
}

# On-demand cloud price per device-hour (USD) for the devices of the published runs, with
# where it comes from; list prices change, so treat these as order-of-magnitude figures.
CLOUD_PRICES: dict[str, tuple[float, str]] = {
    "p100": (1.46, "Google Compute Engine GPU pricing, NVIDIA P100 on-demand, per GPU-hour"),
    "v100": (31.212 / 8, "AWS EC2 p3dn.24xlarge on-demand $31.212/h for 8 V100 32GB"),
    "tpu-v2": (4.50 / 4, "Google Cloud TPU pricing, v2-8 device $4.50/h for 4 chips"),
    "tpu-v3": (8.00 / 4, "Google Cloud TPU pricing, v3-8 device $8.00/h for 4 chips"),
    "h100": (2.0, "assumed market rate for an H100 SXM GPU-hour (not a list price)"),
}

# `jax.Device.device_kind` strings -> table key. Checked in order, first substring match wins,
# on the lower-cased kind, so the more specific patterns come first.
# Examples of real kinds: 'NVIDIA H100 80GB HBM3', 'NVIDIA H100 PCIe', 'NVIDIA H200',
# 'NVIDIA A100-SXM4-40GB', 'NVIDIA A100 80GB PCIe', 'Tesla V100-SXM2-32GB',
# 'Tesla P100-SXM2-16GB', 'TPU v2', 'TPU v3', 'TPU v4', 'TPU v5 lite', 'TPU v5p',
# 'TPU v6 lite'.
_KIND_PATTERNS: list[tuple[tuple[str, ...], str]] = [
    (("h100", "pcie"), "h100-pcie"),
    (("h200",), "h200"),
    (("h100",), "h100"),
    (("a100", "80gb"), "a100-80"),
    (("a100",), "a100-40"),
    (("v100",), "v100"),
    (("p100",), "p100"),
    (("tpu v2",), "tpu-v2"),
    (("tpu v3",), "tpu-v3"),
    (("tpu v4",), "tpu-v4"),
    (("tpu v5 lite",), "tpu-v5e"),
    (("tpu v5e",), "tpu-v5e"),
    (("tpu v5",), "tpu-v5p"),       # 'TPU v5p' and the older plain 'TPU v5'
    (("tpu v6",), "tpu-v6e"),
]


def lookup_device(kind: str) -> DeviceSpec | None:
    """The table entry for a table key ('h100') or a `device_kind` string, or None."""
    key = kind.strip().lower()
    if key in DEVICES:
        return DEVICES[key]
    for needles, name in _KIND_PATTERNS:
        if all(n in key for n in needles):
            return DEVICES[name]
    return None


# --------------------------------------------------------------------------- CPU probe

def measure_cpu_matmul_peak(n: int = 2048, trials: int = 10, calls_per_trial: int = 1) -> float:
    """Measure XLA's fp32 matmul rate on the default CPU device, uncached.

    Times a jitted (n, n) @ (n, n) fp32 matmul; XLA's CPU backend runs one such matmul on all
    of the process's threads, so this is the whole machine's (process's) peak. Best of
    `trials` (each the mean over `calls_per_trial` calls) to skip noisy neighbours; a busy
    machine still reads low. Takes a second or two at n=2048.

    Returns:
        FLOP/s (2 n^3 per matmul).
    """
    import jax
    import jax.numpy as jnp

    cpu = jax.devices("cpu")[0]
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(key_a, (n, n), jnp.float32), cpu)
    b = jax.device_put(jax.random.normal(key_b, (n, n), jnp.float32), cpu)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()           # compile and warm up
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(calls_per_trial):
            matmul(a, b).block_until_ready()
        best = min(best, (time.perf_counter() - start) / calls_per_trial)
    return 2.0 * n**3 / best


def _cache_path() -> Path:
    root = os.environ.get("SCALING_CACHE_DIR") or os.path.join("~", ".cache", "scaling")
    return Path(root).expanduser() / "cpu_peak.json"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # macOS
        return os.cpu_count() or 1


def machine_identity() -> dict:
    """Which machine a CPU peak belongs to: hostname, CPU model, usable cores, jax version."""
    import jax
    return {"hostname": socket.gethostname(), "cpu": _cpu_model(), "cores": _cpu_threads(),
            "jax": jax.__version__}


def cpu_cache_key() -> str:
    """What makes a cached CPU peak reusable: host, CPU model, usable cores, jax version.

    The hostname is part of it because machines with the same CPU model differ (memory
    channels, turbo, neighbours), and a shared cache directory must not mix them.
    """
    m = machine_identity()
    return f"{m['hostname']} | {m['cpu']} | {m['cores']} threads | jax {m['jax']}"


def system_load() -> float | None:
    """The 1-minute load average per usable core (None where the OS has none)."""
    try:
        return os.getloadavg()[0] / _cpu_threads()
    except (AttributeError, OSError):
        return None


# Load per core above which a probe is suspect: other processes took cores from the matmul,
# so the peak reads low and MFU high.
BUSY_LOAD = 0.5


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _format_date(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(text) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def probe_spread(readings: list[float]) -> float:
    """(best - worst) / best of repeated peak readings: 0 on a quiet machine."""
    best = max(readings)
    return (best - min(readings)) / best if best > 0 else 0.0


def probe_cpu_peak(repeats: int = 5, n: int = 2048, measure: Callable[[], float] | None = None,
                   now: datetime.datetime | None = None) -> dict:
    """Measure the CPU matmul peak `repeats` times and describe the measurement.

    The best reading is the peak (contention only ever makes a reading low); the spread
    between the best and the worst reading, and the system load taken just before, say how
    far to trust it.

    Args:
        repeats: independent readings (each itself the best of 3 timed matmuls).
        n: matrix size of the default measure.
        measure: returns one reading in FLOP/s; default `measure_cpu_matmul_peak(n, 3)`.
        now: the date to record (tests pass a fixed one); default the current UTC time.

    Returns:
        {"flops_per_s": best, "median", "min", "spread", "repeats", "load" (per core, before
        the probe; None if unknown), "machine" (machine_identity()), "measured_at" (ISO UTC)}.
    """
    if repeats < 1:
        raise ValueError(f"metrics.cpu_peak_repeats: must be >= 1, got {repeats}")
    measure = measure or (lambda: measure_cpu_matmul_peak(n, trials=3))
    load = system_load()
    readings = [float(measure()) for _ in range(repeats)]
    return {"flops_per_s": max(readings), "median": statistics.median(readings),
            "min": min(readings), "spread": probe_spread(readings), "repeats": repeats,
            "load": load, "matrix": n, "machine": machine_identity(),
            "measured_at": _format_date(now or _utc_now())}


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, path)          # atomic: concurrent processes never read half a file
    except OSError as e:
        warnings.warn(f"could not cache the CPU peak in {path}: {e}")


def save_cpu_peak(probe: dict) -> Path:
    """Store a `probe_cpu_peak()` result as this machine's cached peak; returns the file."""
    path = _cache_path()
    cache = _read_cache(path)
    cache[cpu_cache_key()] = probe
    _write_cache(path, cache)
    return path


def expire_cpu_peak(reason: str) -> bool:
    """Mark this machine's cached CPU peak as wrong, so the next run measures it again.

    Called when a run achieved more than the peak (MFU > 1). Returns whether an entry was
    marked.
    """
    path, key = _cache_path(), cpu_cache_key()
    cache = _read_cache(path)
    entry = cache.get(key)
    if not isinstance(entry, dict):
        return False
    entry["expired"] = reason
    _write_cache(path, cache)
    return True


def describe_probe(probe: dict, path: Path | None = None) -> str:
    """One line naming a probe: value, spread, load, date and (if given) its cache file."""
    load = probe.get("load")
    load_text = f"load {load:.2f}/core" if isinstance(load, (int, float)) else "load unknown"
    text = (f"CPU fp32 matmul probe, {probe['flops_per_s'] / 1e9:.0f} GFLOP/s best of "
            f"{probe.get('repeats', 1)} (spread {100 * probe.get('spread', 0.0):.0f}%, "
            f"{load_text}) measured {probe.get('measured_at', '?')}")
    return text + (f"; cached in {path}" if path is not None else "")


def _stale_reason(entry, max_age_days: float, now: datetime.datetime) -> str | None:
    """Why a cache entry must be measured again, or None if it can be used."""
    if not isinstance(entry, dict) or not isinstance(entry.get("flops_per_s"), (int, float)) \
            or entry["flops_per_s"] <= 0:
        return "none cached"
    if entry.get("expired"):
        return f"expired: {entry['expired']}"
    measured = _parse_date(entry.get("measured_at"))
    if measured is None:
        return "no date"
    age_days = (now - measured).total_seconds() / 86400
    if age_days > max_age_days:
        return f"older than metrics.cpu_peak_max_age_days={max_age_days:g}"
    return None


def cached_cpu_matmul_peak(refresh: bool = False, max_age_days: float = 7.0, repeats: int = 5,
                           now: datetime.datetime | None = None) -> tuple[float, str]:
    """The CPU matmul peak for this machine, measured and then read from the cache.

    Measured again (and the entry replaced: it describes one measurement) when `refresh`,
    when none is cached for this host, when the entry is older than `max_age_days`, or when
    a run expired it (`expire_cpu_peak`, MFU > 1). A peak measured under load gets a warning.

    Returns:
        (FLOP/s of the whole process, a description naming the value, date and cache file).
    """
    path, key = _cache_path(), cpu_cache_key()
    now = now or _utc_now()
    entry = _read_cache(path).get(key)
    measured_now = refresh or _stale_reason(entry, max_age_days, now) is not None
    if measured_now:
        entry = probe_cpu_peak(repeats, now=now)
        save_cpu_peak(entry)
    source = describe_probe(entry, path) + (" (measured now)" if measured_now else "")
    load = entry.get("load")
    if isinstance(load, (int, float)) and load > BUSY_LOAD:
        warnings.warn(f"the CPU peak was measured while the machine was busy (load "
                      f"{load:.2f} per core), so it may read low and MFU high: {source}. "
                      f"Re-measure on a quiet machine with `scaling probe-peak`.", stacklevel=2)
    return float(entry["flops_per_s"]), source


# --------------------------------------------------------------------------- entry point

def device_peak_flops(device=None, override_tflops: float = 0.0, max_age_days: float = 7.0,
                      repeats: int = 5) -> tuple[float, str]:
    """Peak FLOP/s of one device, for MFU.

    Args:
        device: None (this process's first device), a `jax.Device`, a table key ('h100',
            'tpu-v4') or a `device_kind` string.
        override_tflops: if > 0, used as is (config `metrics.device_peak_tflops`).
        max_age_days, repeats: the CPU probe's cache age limit and readings
            (`metrics.cpu_peak_max_age_days`, `metrics.cpu_peak_repeats`).

    Returns:
        (FLOP/s per device, a string naming where the number comes from). For an unknown
        accelerator the peak is 0.0 and MFU should then be reported as unknown (null).
        On CPU the measured whole-process matmul peak is divided by the number of local CPU
        devices, because fake CPU devices (`--xla_force_host_platform_device_count`) share
        the same cores: num_devices * peak_per_device stays the machine's peak.
    """
    if override_tflops and override_tflops > 0:
        return override_tflops * 1e12, f"metrics.device_peak_tflops={override_tflops:g}"

    platform_name = None
    if device is None or not isinstance(device, str):
        import jax
        device = device if device is not None else jax.devices()[0]
        platform_name = device.platform
        kind = device.device_kind
    else:
        kind = device
        platform_name = "cpu" if kind.strip().lower() == "cpu" else None

    if platform_name == "cpu":
        import jax
        flops, source = cached_cpu_matmul_peak(max_age_days=max_age_days, repeats=repeats)
        n_local = max(1, len(jax.local_devices(backend="cpu")))
        if n_local > 1:
            source += f", shared by {n_local} CPU devices"
        return flops / n_local, source

    spec = lookup_device(kind)
    if spec is None:
        return 0.0, (f"unknown device kind {kind!r}: MFU unknown; set "
                     f"--config.metrics.device_peak_tflops")
    return spec.peak_flops_bf16, (f"{spec.peak_tflops_bf16:g} TFLOP/s {spec.mixed_precision} "
                                  f"dense, {spec.source}")
