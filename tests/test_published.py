"""`scaling plan --table --published`: the published runs' implied MFU, by hand and printed."""
import json

import pytest

from experiments import size_table
from scaling import published
from scaling.commands import plan as plan_cmd


@pytest.fixture(scope="module")
def rows():
    return published.published_rows(size_table.PUBLISHED_RUNS, size_table.ROWS)


def test_megatron_implied_mfu_by_hand(rows, capsys):
    # 8.3B: d 3072, d_ff 12288, 72 layers, T 1024, vocab padded to 51,200 (tied head).
    d, f, layers, t, vocab = 3072, 12_288, 72, 1024, 51_200
    n_matmul = layers * (4 * d * d + 2 * d * f) + vocab * d
    per_token = 6 * n_matmul + 12 * layers * t * d            # PaLM convention
    tokens = 300_000 * 512 * 1024
    flops = per_token * tokens
    mfu_9_days = flops / (9 * 24 * 3600 * 512 * 125e12)        # V100 fp16 tensor peak
    row = next(r for r in rows if r["key"] == "megatron:8b3")
    assert row["model_flops"] == pytest.approx(flops, rel=1e-9)
    lecture = next(x for x in row["times"] if x["hours"] == 9 * 24)
    assert lecture["implied_mfu"] == pytest.approx(mfu_9_days, rel=1e-9)
    # The same figure reaches the printed table and the JSON.
    assert plan_cmd.main(["--table", "--published"]) == 0
    assert f"{100 * mfu_9_days:.0f}% fp16" in capsys.readouterr().out
    assert plan_cmd.main(["--table", "--published", "--json"]) == 0
    printed = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert printed["megatron:8b3"]["times"][1]["implied_mfu"] == pytest.approx(mfu_9_days)
    # H100 estimate: the same FLOPs on 512 H100s at 40 % of 989 TFLOP/s.
    est = row["estimate"]
    assert est["hours"] == pytest.approx(flops / (512 * 989e12 * 0.4) / 3600)
    assert est["cost_usd"] == pytest.approx(est["hours"] * 512 * 2.0)


def test_every_published_row_is_printed(capsys):
    assert plan_cmd.main(["--table", "--published", "--h100s", "8", "--mfu", "0.5",
                          "--price-per-device-hour", "3"]) == 0
    out = capsys.readouterr().out
    table = out.split("\nSources:")[0].splitlines()
    for row in size_table.ROWS:
        if row.in_table:
            assert any(line.startswith(row.name) for line in table), row.name
    assert any(line.startswith("GPT-2 (XL)") and "not published" in line for line in table)
    # XLNet: the paper's 5.5 days and the lecture's 2.5 days, each with its own MFU.
    assert "5.5 days" in out and "2.5 days" in out and "Yang et al. 2019" in out
    assert "at 50% MFU, $3.00/device-hour" in out and "$430,000" in out


@pytest.mark.parametrize("argv, message", [
    (["--published"], "--published: only with --table"),
    (["--table", "--published", "--h100s", "0"], "--h100s: must be a positive"),
    (["--table", "--published", "--mfu", "1.5"], "--mfu: must be in (0, 1]"),
    (["--table", "--published", "--price-per-device-hour", "0"],
     "--price-per-device-hour: must be positive"),
    (["--table", "--published", "--device", "a100-80"], "--price-per-device-hour: no cloud"),
    (["--table", "--h100s", "8"], "--h100s and --price-per-device-hour: only with"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    assert plan_cmd.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scaling plan: error: {message}") and err.count("\n") == 1


def test_xlnet_lecture_time_is_the_first_papers_smaller_run(rows):
    xlnet = next(r for r in rows if r["key"] == "xlnet:large")
    paper, lecture = xlnet["times"]
    assert paper["tokens"] == 500_000 * 8192 * 512 and lecture["tokens"] == paper["tokens"] // 4
    # Same model, a quarter of the tokens in 60 h instead of 132 h.
    assert lecture["implied_mfu"] == pytest.approx(paper["implied_mfu"] / 4 * 132 / 60)
