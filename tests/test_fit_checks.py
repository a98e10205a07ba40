"""Fits that say when they fail: data that contradict L(N) = E + A·N^-α get warnings, and
the report then shows no confident constants."""
import numpy as np

from scaling import fit, fit_checks

SIZES = np.geomspace(1e4, 1e6, 5)


def _warnings(losses, boot=100):
    result = fit.fit_power_law(SIZES, np.asarray(losses, dtype=float), boot=boot, seed=0)
    return result, "\n".join(result.warnings)


def test_rising_losses_warn_and_report_hides_constants():
    # The case: losses that rise with N (2.14 -> 3.10) fitted alpha = 0.0001.
    result, text = _warnings(np.linspace(2.14, 3.10, 5))
    assert "does not fall with N (Kendall tau = +1.00)" in text
    assert "only 1 point(s) on the frontier" in text
    assert "alpha = 0.0001 is at its bound" in text
    report = "\n".join(fit.format_fit(result, "N", "alpha"))
    assert report.count("WARNING:") == len(result.warnings) >= 3
    assert "alpha  =" not in report and "alpha  ~" in report     # no confident constant


def test_flat_losses_warn():
    _, text = _warnings(np.full(5, 3.0))
    assert "flat in N" in text and "only 1 point(s) on the frontier" in text


def test_exponent_at_its_upper_bound_warns():
    # A cliff then a plateau: the fit takes alpha to its bound 5.
    _, text = _warnings([4.0, 2.001, 2.0005, 2.0002, 2.0], boot=30)
    assert "alpha = 5 is at its bound 5" in text
    assert "A's 95% interval" in text and "spans a factor" in text


def test_noisy_few_points_give_wide_interval_warnings():
    rng = np.random.default_rng(0)
    losses = (1.8 + 60 * SIZES ** -0.32) * (1 + 0.2 * rng.standard_normal(5))
    _, text = _warnings(losses)
    assert "alpha's 95% interval" in text and "wider than its value" in text


def test_a_clean_law_passes_every_check():
    sizes = np.geomspace(1e4, 1e8, 8)
    rng = np.random.default_rng(1)
    losses = (1.8 + 60 * sizes ** -0.32) * (1 + 0.002 * rng.standard_normal(8))
    result = fit.fit_power_law(sizes, losses, boot=100, seed=0)
    assert result.warnings == []
    assert "alpha  =" in "\n".join(fit.format_fit(result, "N", "alpha"))


def test_frontier_counts_runs_that_beat_every_smaller_one():
    # 6 runs, 6 distinct sizes; only 3 improve on all smaller ones.
    x = [1, 2, 3, 4, 5, 6]
    y = [3.0, 3.2, 2.9, 2.95, 2.5, 2.6]
    assert fit_checks.frontier_mask(x, y).tolist() == [True, False, True, False, True, False]
    assert fit_checks.frontier_warnings(3, 3) and not fit_checks.frontier_warnings(4, 3)


def test_interval_and_bound_checks_on_numbers():
    ok = {"A": (10.0, 5.0, 40.0), "alpha": (0.3, 0.2, 0.45)}
    assert fit_checks.interval_warnings(ok, ("A",), ("alpha",)) == []
    bad = {"A": (10.0, 1.0, 40.0), "alpha": (0.3, 0.05, 0.45)}
    assert len(fit_checks.interval_warnings(bad, ("A",), ("alpha",))) == 2
    assert fit_checks.bound_warnings({"a": 0.0}, {"a": (0.0, 1.0)})
    assert not fit_checks.bound_warnings({"a": 0.5}, {"a": (0.0, 1.0)})


def test_fit_command_bpb_metric_and_warning_for_rising_runs(tmp_path, capsys):
    import json

    from scaling.commands import fit as fit_cmd
    root = tmp_path / "sweep"
    for k, (n, bpb) in enumerate(zip([20_000, 60_000, 200_000, 600_000],
                                     [1.40, 1.55, 1.70, 1.95])):
        run = root / f"{k}"
        run.mkdir(parents=True)
        records = [{"event": "run_start", "non_embedding_params": n, "batch_size": 4,
                    "seq_len": 32},
                   {"step": 100, "eval_loss": 1.0 + 0.1 * k, "eval_bpb": bpb},
                   {"event": "run_end", "step": 100, "eval_loss": 1.0 + 0.1 * k,
                    "eval_bpb": bpb}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert fit_cmd.main([str(root), "--metric", "bpb", "--boot", "50",
                         "--plot", str(tmp_path / "f.png")]) == 0
    text = capsys.readouterr().out
    assert "final eval bits per byte" in text and "bpb 1.9500" in text
    assert "WARNING: L(N): loss does not fall with N" in text
    assert "residual" in text


def test_envelope_from_one_run_is_flagged_as_a_training_curve():
    # The bigger runs never beat the smallest one: its curve alone is the envelope.
    points = [fit.RunPoints(f"r{k}", n, 2.0 + k, np.geomspace(1e9, 1e10, 5) * (k + 1),
                            np.linspace(3.0, 2.0, 5) + k, True)
              for k, n in enumerate([1e4, 1e5, 1e6])]
    fits = fit.fit_runs(points, boot=20)
    assert any("come from only 1 run(s)" in w for w in fits.loss_vs_compute.warnings)
