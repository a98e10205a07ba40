"""The published training runs of the size table: what their wall-clock time implies.

For each run (experiments/size_table.py PUBLISHED_RUNS, passed in by the caller):
- model FLOPs = sum over its phases of tokens x `ModelSpec.flops_per_token` at that phase's
  context (PaLM convention: 6·N_mm + 12·L·T·d per token, see scaling.spec);
- implied MFU = model FLOPs / (published hours x 3600 x devices x the device's dense peak in
  the precision the paper trained in), one figure per published time;
- the same FLOPs on `devices` x `device` (default H100) at an assumed MFU, and what both runs
  cost at an on-demand price per device-hour (scaling.hardware.CLOUD_PRICES, or given).
"""
from __future__ import annotations

from scaling.plan import _count, _duration, row_config


def model_flops(spec, phases) -> float:
    """Training FLOPs of `phases` (size_table.Phase) for the model `spec`."""
    return float(sum(p.tokens * spec.flops_per_token(p.seq_len, p.target_len)
                     for p in phases))


def implied_mfu(flops: float, hours: float, devices: int, peak_flops: float) -> float:
    """The fraction of `devices` x `peak_flops` that `flops` in `hours` means."""
    return flops / (hours * 3600.0 * devices * peak_flops)


def _check(device: str, devices: int | None, mfu: float, price: float | None):
    from scaling.hardware import CLOUD_PRICES, DEVICES  # noqa: PLC0415

    if device.lower() not in DEVICES:
        raise ValueError(f"--device: unknown {device!r}; known: {', '.join(DEVICES)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu: must be in (0, 1], got {mfu}")
    if devices is not None and devices < 1:
        raise ValueError(f"--h100s: must be a positive device count, got {devices}")
    if price is not None and not price > 0:
        raise ValueError(f"--price-per-device-hour: must be positive, got {price}")
    if price is None and device.lower() not in CLOUD_PRICES:
        raise ValueError(f"--price-per-device-hour: no cloud price for {device} in "
                         "scaling/hardware.py CLOUD_PRICES; give one")
    target = DEVICES[device.lower()]
    price, price_source = ((price, "--price-per-device-hour") if price is not None
                           else CLOUD_PRICES[target.name])
    return target, price, price_source


def published_rows(runs, size_table, device: str = "h100", devices: int | None = None,
                   mfu: float = 0.4, price: float | None = None) -> list[dict]:
    """One dict per size-table row with a published-run entry (raw units: FLOPs, hours, $).

    Args:
      runs: {key: PublishedRun} (experiments/size_table.py PUBLISHED_RUNS).
      size_table: the size-table rows, for names and configs (in_table rows only).
      device, devices: where to estimate the same run (devices None: the published count).
      mfu: the MFU assumed for that estimate.
      price: $ per device-hour of `device` (None: scaling.hardware.CLOUD_PRICES).

    Raises:
      ValueError: one line naming the bad option.
    """
    from scaling.hardware import CLOUD_PRICES, DEVICES  # noqa: PLC0415
    from scaling.models import model_spec  # noqa: PLC0415

    target, target_price, target_price_source = _check(device, devices, mfu, price)
    out = []
    for row in size_table:
        run = runs.get(row.key)
        if run is None or not row.in_table:
            continue
        entry = {"key": row.key, "name": row.name, "published": run.published,
                 "hardware_source": run.hardware_source, "tokens_source": run.tokens_source,
                 "precision": run.precision, "precision_source": run.precision_source,
                 "note": run.note, "lecture_cost": run.lecture_cost}
        if not run.published:
            out.append(entry)
            continue
        hw = DEVICES[run.device]
        peak = hw.peak_flops(run.precision)
        price_hw, price_hw_source = CLOUD_PRICES.get(hw.name, (None, "no cloud price"))
        spec = model_spec(row_config(row))
        flops = model_flops(spec, run.phases)
        times = []
        for c in run.times:      # a source describing another run brings its own phases
            c_flops = model_flops(spec, c.phases) if c.phases else flops
            times.append({
                "hours": c.hours, "source": c.source,
                "tokens": sum(p.tokens for p in c.phases) if c.phases else run.tokens,
                "phases": [p.text for p in c.phases] if c.phases else None,
                "model_flops": c_flops,
                "implied_mfu": implied_mfu(c_flops, c.hours, run.devices, peak),
                "cost_usd": c.hours * run.devices * price_hw if price_hw else None})
        n = devices or run.devices
        hours = flops / (n * target.peak_flops_bf16 * mfu) / 3600.0
        entry |= {
            "device": hw.name, "devices": run.devices, "peak_flops": peak,
            "phases": [p.text for p in run.phases], "tokens": run.tokens,
            "model_flops": flops, "times": times,
            "price_per_device_hour": price_hw, "price_source": price_hw_source,
            "estimate": {"device": target.name, "devices": n, "mfu": mfu,
                         "peak_flops": target.peak_flops_bf16, "hours": hours,
                         "price_per_device_hour": target_price,
                         "price_source": target_price_source,
                         "cost_usd": hours * n * target_price},
        }
        out.append(entry)
    return out


def _money(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"${x / 1e3:,.0f}k" if x >= 1e4 else f"${x:,.0f}"


def _dedupe_times(times: list[dict]) -> list[tuple[dict, list[int]]]:
    """Times with equal hours merged: (time, indices of the sources saying it)."""
    merged: list[tuple[dict, list[int]]] = []
    for i, t in enumerate(times):
        for first, idx in merged:
            if first["hours"] == t["hours"] and first["tokens"] == t["tokens"]:
                idx.append(i)
                break
        else:
            merged.append((t, [i]))
    return merged


def format_published(rows: list[dict]) -> str:
    """The table, then every row's sources."""
    est = next((r["estimate"] for r in rows if r["published"]), None)
    target = (f"on {est['device']} at {100 * est['mfu']:.0f}% MFU" if est else "")
    header = (f"{'model':<18} {'hardware':<13} {'time':>10} {'src':<5} {'tokens':>7} "
              f"{'model FLOPs':>11} {'MFU':>4} {'prec':<4} {'cost':>6}  |  "
              f"{'devices':>7} {'time':>10} {'cost':>6}")
    lines = [f"Published training runs: implied MFU, and the same FLOPs {target}", header]
    sources = []
    for number, r in enumerate(rows, start=1):
        if not r["published"]:
            lines.append(f"{r['name']:<18} not published  [{number}]")
            sources.append(f"[{number}] {r['name']}: {r['hardware_source']}")
            continue
        e = r["estimate"]
        merged = _dedupe_times(r["times"])
        for j, (t, idx) in enumerate(merged):
            src = ",".join(f"{number}{'abcd'[i]}" for i in idx)
            time_text = _duration(t["hours"] * 3600)
            mfu_text = f"{100 * t['implied_mfu']:.0f}%"
            if j == 0:
                lines.append(
                    f"{r['name']:<18} {str(r['devices']) + ' x ' + r['device']:<13} "
                    f"{time_text:>10} {src:<5} {_count(r['tokens']):>7} "
                    f"{r['model_flops']:>11.3g} {mfu_text:>4} {r['precision']:<4} "
                    f"{_money(t['cost_usd']):>6}  |  {e['devices']:>7} "
                    f"{_duration(e['hours'] * 3600):>10} {_money(e['cost_usd']):>6}")
            else:
                other = t["tokens"] != r["tokens"]
                lines.append(f"{'':<18} {'':<13} {time_text:>10} {src:<5} "
                             f"{_count(t['tokens']) if other else '':>7} "
                             f"{format(t['model_flops'], '.3g') if other else '':>11} "
                             f"{mfu_text:>4} {r['precision']:<4} {_money(t['cost_usd']):>6}")
        sources.append(f"[{number}] {r['name']}: hardware: {r['hardware_source']}")
        for i, t in enumerate(r["times"]):
            run_text = f" (run: {' + '.join(t['phases'])})" if t["phases"] else ""
            sources.append(f"  {number}{'abcd'[i]} time{run_text}: {t['source']}")
        sources.append(f"  tokens ({' + '.join(r['phases'])}): {r['tokens_source']}")
        sources.append(f"  precision {r['precision']} "
                       f"({r['peak_flops'] / 1e12:g} TFLOP/s peak): {r['precision_source']}")
        sources.append(f"  cost at ${r['price_per_device_hour'] or 0:.2f}/device-hour: "
                       f"{r['price_source']}")
        if r["lecture_cost"]:
            sources.append(f"  lecture: {r['lecture_cost']}")
        if r["note"]:
            sources.append(f"  note: {r['note']}")
    if est:
        lines.append(
            f"model FLOPs = tokens x FLOPs/token (PaLM 6N + 12LTd at each phase's context); "
            f"MFU = model FLOPs / (time x devices x peak in the paper's precision); right: "
            f"the same FLOPs on {est['device']} ({est['peak_flops'] / 1e12:g} TFLOP/s bf16) "
            f"at {100 * est['mfu']:.0f}% MFU, ${est['price_per_device_hour']:.2f}/device-hour"
            f" ({est['price_source']})")
    return "\n".join(lines + ["", "Sources:"] + sources)
