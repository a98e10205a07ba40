"""Scaling-law fits: parameter recovery from a known law, impossible fits, the CLI on runs."""
import json

import numpy as np
import pytest

from scaling import fit
from scaling.commands import fit as fit_cmd


def _law(n, e=1.8, a=60.0, alpha=0.32):
    return e + a * np.power(n, -alpha)


def test_alpha_recovered_within_5_percent_from_noisy_losses():
    rng = np.random.default_rng(1234)
    sizes = np.geomspace(2e4, 2e8, 9)
    losses = _law(sizes) * (1 + 0.004 * rng.standard_normal(sizes.size))  # 0.4 % noise
    result = fit.fit_power_law(sizes, losses, boot=200, seed=0)
    assert abs(result.alpha - 0.32) / 0.32 < 0.05
    assert abs(result.E - 1.8) / 1.8 < 0.05
    _, lo, hi = result.intervals["alpha"]
    assert lo <= result.alpha <= hi and hi - lo < 0.25 * result.alpha
    assert result.boot_used > 150


def test_pure_power_law_recovers_exponent():
    c = np.geomspace(1e10, 1e14, 12)
    result = fit.fit_power_law(c, 30.0 * c ** -0.05, form="pure", boot=0)
    assert result.alpha == pytest.approx(0.05, rel=1e-6)
    assert result.E == 0.0


def test_fewer_than_three_sizes_is_rejected():
    with pytest.raises(fit.FitError, match="at least 3 distinct sizes"):
        fit.fit_power_law([1e5, 1e5, 1e6], [3.0, 3.1, 2.5])


def _write_run(path, n, losses_by_tokens, finished=True):
    """A run directory as the training loop writes it (only the fields fit reads)."""
    path.mkdir(parents=True)
    batch, seq = 4, 32
    lines = [{"event": "run_start", "params": n + 1000, "non_embedding_params": n,
              "batch_size": batch, "seq_len": seq}]
    for tokens, loss in losses_by_tokens:
        lines.append({"step": tokens // (batch * seq), "eval_loss": loss})
    if finished:
        lines.append({"event": "run_end", "step": lines[-1]["step"],
                      "eval_loss": losses_by_tokens[-1][1]})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _synthetic_sweep(root, sizes, noise=0.0, seed=0):
    """Runs whose eval loss follows L(N, D) = 1.8 + 60 N^-0.32 + 400 D^-0.3 (Chinchilla form)."""
    rng = np.random.default_rng(seed)
    for k, n in enumerate(sizes):
        curve = []
        for tokens in np.geomspace(128 * 10, 128 * 2000, 6).astype(int) // 128 * 128:
            loss = _law(n) + 400.0 * tokens ** -0.3
            curve.append((int(tokens), float(loss * (1 + noise * rng.standard_normal()))))
        _write_run(root / f"{k}-n{n}", int(n), curve)


def test_fit_command_on_runs_prints_constants_and_writes_plot(tmp_path, capsys):
    _synthetic_sweep(tmp_path / "sweep", [20_000, 60_000, 200_000, 600_000, 2_000_000])
    out = tmp_path / "fit.png"
    assert fit_cmd.main([str(tmp_path / "sweep"), "-o", str(out), "--boot", "100"]) == 0
    text = capsys.readouterr().out
    assert "L(N) = E + A·N^(-alpha)" in text and "95% CI" in text
    assert "L(C)" in text and "N*(C)" in text
    assert out.is_file() and out.stat().st_size > 10_000


def test_fit_command_json_and_loss_falls_with_size(tmp_path, capsys):
    _synthetic_sweep(tmp_path / "sweep", [20_000, 60_000, 200_000, 600_000], noise=0.002)
    assert fit_cmd.main([str(tmp_path / "sweep"), "--boot", "50", "--json",
                         "-o", str(tmp_path / "f.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loss_vs_params"]["alpha"] > 0
    assert set(report["loss_vs_params"]["intervals_95"]) == {"E", "A", "alpha"}


def test_fit_command_two_sizes_exits_2_with_one_line(tmp_path, capsys):
    _synthetic_sweep(tmp_path / "sweep", [20_000, 60_000])
    _write_run(tmp_path / "sweep" / "unfinished", 200_000, [(1280, 4.0)], finished=False)
    assert fit_cmd.main([str(tmp_path / "sweep"), "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("scaling fit: error: L(N) needs final eval losses of at least 3 "
                             "model sizes; got 2")


def test_envelope_takes_the_lowest_run_at_each_compute():
    small = fit.RunPoints("s", 10, 3.0, np.array([1.0, 10.0, 100.0]), np.array([4.0, 3.5, 3.2]),
                          True)
    big = fit.RunPoints("b", 100, 2.5, np.array([10.0, 100.0, 1000.0]),
                        np.array([4.5, 3.0, 2.5]), True)
    env = fit.envelope([small, big], grid_size=4)        # C = 1, 10, 100, 1000
    np.testing.assert_allclose(env.compute, [1, 10, 100, 1000])
    np.testing.assert_allclose(env.loss, [4.0, 3.5, 3.0, 2.5])
    assert env.run == ["s", "s", "b", "b"]


def test_envelope_leaves_out_points_a_finished_run_beats():
    early = fit.RunPoints("early", 10, 3.0, np.array([1.0, 10.0]), np.array([4.0, 3.0]), True)
    late = fit.RunPoints("late", 100, 2.5, np.array([100.0, 1000.0]), np.array([3.5, 2.5]),
                         True)
    env = fit.envelope([early, late], grid_size=4)       # C = 1, 10, 100, 1000
    np.testing.assert_allclose(env.compute, [1, 10, 1000])  # C=100: 3.5 > early's 3.0
    assert env.run == ["early", "early", "late"]
    assert np.all(np.diff(env.loss) <= 0)
