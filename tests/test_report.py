"""`scaling report` and `scaling plot` on synthetic run directories, healthy and damaged."""
import json
import subprocess
import sys

import pytest

from scaling import runs
from scaling.commands import plot, report


def make_run(run_dir, *, params, loss0, model, tokens_per_s, with_config=True):
    """A small hand-written run: run_start, 3 train records, 2 evals (known numbers)."""
    run_dir.mkdir(parents=True)
    lines = [{"event": "run_start", "model": model, "params": params,
              "flops_per_token": 6 * params, "flops_convention": "kaplan",
              "batch_size": 4, "seq_len": 32, "num_devices": 1}]
    for i, step in enumerate((10, 20, 30)):
        lines.append({"step": step, "loss": loss0 - 0.1 * i, "tokens_per_s": tokens_per_s[i],
                      "mfu": 0.1 * (i + 1), "tokens_seen": step * 128,
                      "flops_seen": step * 128 * 6 * params, "goodput": 0.9,
                      "host_peak_rss_bytes": 2**30 * (i + 1)})
        if step in (20, 30):
            lines.append({"step": step, "eval_loss": loss0 + (0.05 if step == 30 else 0.0)})
    with open(run_dir / "metrics.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    if with_config:
        (run_dir / "config.json").write_text(json.dumps({"model": {"name": model}}))
    return run_dir


@pytest.fixture
def two_runs(tmp_path):
    big = make_run(tmp_path / "run_big", params=124_439_808, loss0=3.0, model="GPT-2 small",
                   tokens_per_s=[1000.0, 3000.0, 2000.0])
    small = make_run(tmp_path / "run_small", params=1_500_000, loss0=4.0, model="tiny",
                     tokens_per_s=[9000.0, 11000.0, 10000.0])
    return big, small


def cli(*args):
    return subprocess.run([sys.executable, "-m", "scaling.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_report_json_two_runs(two_runs, capsys):
    big, small = two_runs
    assert report.main([str(big), str(small), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["run_small", "run_big"]       # smallest model first
    small_row, big_row = rows
    assert big_row["params"] == 124_439_808 and small_row["params"] == 1_500_000
    assert big_row["model"] == "GPT-2 small"
    assert big_row["flops_per_token"] == 6 * 124_439_808
    assert big_row["tokens_seen"] == 30 * 128 and big_row["step"] == 30
    assert big_row["final_eval_loss"] == pytest.approx(3.05)
    assert big_row["best_eval_loss"] == pytest.approx(3.0)
    assert big_row["best_eval_loss"] < small_row["best_eval_loss"]
    assert big_row["median_tokens_per_s"] == 2000.0                   # median of 1k, 3k, 2k
    assert big_row["median_mfu"] == pytest.approx(0.2)
    assert big_row["peak_memory_bytes"] == 3 * 2**30 and big_row["memory_kind"] == "host"
    assert big_row["goodput"] == pytest.approx(0.9)


def test_report_table_human_units(two_runs):
    big, small = two_runs
    result = cli("report", big, small)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, rule, first, second, *_ = result.stdout.splitlines()
    assert first.startswith("run_small") and second.startswith("run_big")
    assert "124.4M" in second and "1.5M" in first
    assert "746.6 MFLOP" in second                       # 6 * 124.4M FLOPs per token
    assert "2.0k" in second and "10.0k" in first         # median tok/s
    assert "3.0 GiB host" in second
    assert "20.0%" in second                             # median MFU
    assert len(header) >= len(second.rstrip()) - 10     # aligned columns share one width
    assert header.index("params") < header.index("tok/s")


def test_report_csv(two_runs, capsys):
    big, small = two_runs
    assert report.main([str(big.parent), "--csv"]) == 0       # a directory of runs
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run,model,params,")
    assert len(lines) == 3 and lines[2].startswith("run_big,GPT-2 small,124439808,")


def test_report_damaged_run_still_reports(two_runs, capsys):
    big, small = two_runs
    with open(big / "metrics.jsonl", "a") as f:
        f.write("not json at all\n")               # line 7: 6 lines above
        f.write(json.dumps({"step": 40, "loss": 2.5, "new_field": 1}) + "\n")
        f.write('{"step": 50, "loss": 2.')          # killed mid-write
    assert report.main([str(big), "--json"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)[0]
    assert row["step"] == 40 and row["final_loss"] == 2.5
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 3, warnings                 # one per problem
    assert any("incomplete" in w for w in warnings)
    assert any("unparsable" in w and "line 7" in w for w in warnings)
    assert any("new_field" in w for w in warnings)


def test_report_resumed_run_keeps_latest_segment(tmp_path, capsys):
    run_dir = make_run(tmp_path / "resumed", params=1000, loss0=5.0, model="m",
                       tokens_per_s=[1.0, 1.0, 1.0])
    with open(run_dir / "metrics.jsonl", "a") as f:     # restarted from the step-20 checkpoint
        f.write(json.dumps({"event": "run_start", "model": "m", "params": 1000}) + "\n")
        f.write(json.dumps({"step": 30, "loss": 1.0, "tokens_per_s": 1.0}) + "\n")
    run = runs.read_run(run_dir)
    assert [r["step"] for r in run.train] == [10, 20, 30]
    assert run.train[-1]["loss"] == 1.0 and run.warnings == []


def test_report_empty_dir_exits_2_without_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("report", tmp_path / "empty", tmp_path / "missing")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    err = result.stderr.strip().splitlines()
    assert len(err) == 3                                 # two warnings + the one-line message
    assert err[-1].startswith("scaling report: no run could be read")


def test_report_one_good_one_empty_exits_0(two_runs, tmp_path, capsys):
    big, _ = two_runs
    (tmp_path / "empty").mkdir()
    assert report.main([str(big), str(tmp_path / "empty")]) == 0
    captured = capsys.readouterr()
    assert "run_big" in captured.out and "no metrics.jsonl" in captured.err


def test_plot_writes_png(two_runs, tmp_path, capsys):
    big, small = two_runs
    out = tmp_path / "curves.png"
    assert plot.main([str(big), str(small), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_nothing_readable_exits_2(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert plot.main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert not out.exists()


def test_reader_wrong_types_never_raise(tmp_path):
    run_dir = tmp_path / "odd"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("[1, 2")                      # unreadable config
    (run_dir / "metrics.jsonl").write_text(
        json.dumps({"event": "run_start", "params": "many", "model": 7}) + "\n"
        + json.dumps({"step": "ten", "loss": 1.0}) + "\n"
        + json.dumps({"step": 1, "loss": "low", "tokens_per_s": None, "mfu": True}) + "\n"
        + "[1, 2, 3]\n")
    run = runs.read_run(run_dir)
    row = runs.summarize(run)
    assert row["params"] is None and row["model"] is None and row["final_loss"] is None
    assert row["step"] == 1 and row["median_mfu"] is None
    assert len(run.warnings) == 3          # config, the step-less record, the non-object line
    assert report.format_table([row])      # formats without raising
