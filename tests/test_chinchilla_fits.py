"""Chinchilla approaches 2 (iso-FLOP) and 3 (L(N, D)) recover a published law, warn on
iso-FLOP curves that contradict it, and run from the CLI on run directories."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scaling import approach3, isoflop
from scaling.commands import fit as fit_cmd

FIXTURE = Path(__file__).parent / "fixtures" / "chinchilla_synthetic.json"
A_TRUE = 0.28 / (0.34 + 0.28)       # beta / (alpha + beta) of Hoffmann et al.'s eq. 10


def _fixture():
    doc = json.loads(FIXTURE.read_text())
    cols = {k: np.array([p[k] for p in doc["points"]]) for k in ("flops", "params", "tokens",
                                                                 "loss")}
    return doc, cols


def test_fixture_is_what_its_generator_writes():
    sys.path.insert(0, str(FIXTURE.parent))
    try:
        import make_chinchilla_synthetic as gen
    finally:
        sys.path.pop(0)
    doc, _ = _fixture()
    assert doc["points"] == json.loads(json.dumps(gen.points()))
    assert doc["law"] == {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


@pytest.fixture(scope="module")
def surface():
    _, c = _fixture()
    return approach3.fit_loss_surface(c["params"], c["tokens"], c["loss"], boot=60, seed=0)


def test_approach3_recovers_the_generating_constants_within_their_intervals(surface):
    doc, _ = _fixture()
    for name, true in doc["law"].items():
        _, lo, hi = surface.intervals[name]
        assert lo <= true <= hi, (name, true, lo, hi)
        assert lo <= getattr(surface, name) <= hi
    assert surface.warnings == []
    _, lo, hi = surface.a_interval()
    assert lo <= A_TRUE <= hi and abs(surface.a - A_TRUE) < 0.02
    # Closed form of N_opt against a brute-force minimum of the true law along C = 6ND.
    c = 1e21
    n = np.geomspace(1e8, 1e11, 20001)
    law = 1.69 + 406.4 / n ** 0.34 + 410.7 / (c / (6 * n)) ** 0.28
    n_true = n[np.argmin(law)]
    truth = approach3.LossSurfaceFit(1.69, 406.4, 0.34, 410.7, 0.28, {}, np.zeros((0, 5)), 0,
                                     np.zeros(0), [])
    assert truth.optimal_params(c) == pytest.approx(n_true, rel=1e-3)


def test_approach2_recovers_the_compute_optimal_exponent():
    _, c = _fixture()
    fit = isoflop.fit_isoflop(c["flops"], c["params"], c["loss"], boot=100, seed=0)
    assert len(fit.budgets) == 5 and all(b.n_opt is not None for b in fit.budgets)
    assert abs(fit.a - A_TRUE) < 0.05
    _, lo, hi = fit.a_interval
    assert lo <= A_TRUE <= hi
    assert fit.b == pytest.approx(1 - fit.a)
    text = "\n".join(isoflop.format_isoflop(fit))
    assert "a = 0.49, b = 0.51" in text and "a = 0.73" in text


def test_budgets_within_5_percent_are_one_group():
    labels = isoflop.group_budgets([1e18, 1.04e18, 1e19, 0.98e19, 1.2e18])
    assert labels.tolist() == [0, 0, 2, 2, 1]


def test_downward_parabola_and_minimum_outside_the_sizes_warn():
    n = np.geomspace(1e6, 1e8, 5)
    x = np.log(n / 1e7)
    falling = 3.0 - 0.1 * x + 0.01 * x ** 2         # minimum far above the largest size
    hump = 3.0 - 0.05 * x ** 2                       # opens downward: no minimum
    bowl = 2.5 + 0.02 * x ** 2                       # minimum at 1e7
    flops = [1e15] * 5 + [1e16] * 5 + [1e17] * 5
    fit = isoflop.fit_isoflop(flops, np.tile(n, 3), np.concatenate([falling, hump, bowl]),
                              boot=50)
    text = "\n".join(fit.warnings)
    assert "C=1e+15: the minimum N*=" in text and "outside the sampled sizes" in text
    assert "C=1e+16: the parabola in log N opens downward" in text
    assert "only 2 point(s) on the frontier (budgets with a minimum N*)" in text
    assert fit.budgets[2].n_opt == pytest.approx(1e7, rel=1e-6)


def test_approach3_needs_six_runs():
    with pytest.raises(approach3.Approach3Error, match="at least 6 runs"):
        approach3.fit_loss_surface([1e6, 2e6, 3e6], [1e8, 2e8, 1e8], [3.0, 2.9, 2.8])


def _write_run(path, n, tokens, loss, config=None):
    path.mkdir(parents=True)
    batch, seq = 8, 128
    records = [{"event": "run_start", "non_embedding_params": int(n), "batch_size": batch,
                "seq_len": seq},
               {"step": int(tokens // (batch * seq)), "eval_loss": loss},
               {"event": "run_end", "step": int(tokens // (batch * seq)), "eval_loss": loss}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))


def _iso_grid():
    """(budget index, size index, C, N, D, loss): three budgets of four sizes around each
    budget's optimum, losses from Hoffmann et al.'s fitted law without noise."""
    for k, c in enumerate([1e16, 1e17, 1e18]):
        n_opt = 1.5 * (c / 6) ** A_TRUE
        for j, n in enumerate(np.geomspace(n_opt / 4, n_opt * 4, 4)):
            d = c / (6 * n)
            yield k, j, c, n, d, 1.69 + 406.4 / n ** 0.34 + 410.7 / d ** 0.28


def test_isoflop_command_on_run_directories(tmp_path, capsys):
    # Three budgets of four sizes from the synthetic law. The first budget's runs record it
    # as `scaling sweep` does (sweep_member.budget_flops), the second as sweep.flops; the
    # third's are grouped by their own 6·N·D (rounded to whole steps: within 5 %).
    root = tmp_path / "iso"
    for k, j, c, n, d, loss in _iso_grid():
        config = [{"sweep_member": {"budget_flops": c}},
                  {"sweep": {"budget": "flops", "flops": c}}, None][k]
        spread = 1 + 0.1 * j if config else 1.0      # 6·N·D off the budget by up to 30 %
        _write_run(root / f"c{k}-{j}", n, d * spread, loss, config)
    out = tmp_path / "iso.png"
    assert fit_cmd.main(["--isoflop", str(root), "--plot", str(out), "--boot", "10"]) == 0
    text = capsys.readouterr().out
    assert "3 budget(s)" in text and "N*(C) ∝ C^a: a " in text and "95% CI" in text
    assert "L(N, D) = E + A/N^alpha + B/D^beta" in text and "compute-optimal a:" in text
    assert out.is_file() and out.stat().st_size > 20_000


def test_points_file_json_report_and_a_bad_file(tmp_path, capsys):
    assert fit_cmd.main(["--isoflop", "--points", str(FIXTURE), "--boot", "10", "--json",
                         "--plot", str(tmp_path / "iso.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert abs(report["isoflop"]["a"] - A_TRUE) < 0.05
    assert report["isoflop"]["b"] == pytest.approx(1 - report["isoflop"]["a"])
    assert set(report["approach3"]["intervals_95"]) == {"E", "A", "alpha", "B", "beta"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"points": [{"params": 1}]}')
    assert fit_cmd.main(["--isoflop", "--points", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"scaling fit: error: --points {bad}")


def test_isoflop_uses_the_n_that_the_budget_counts(tmp_path, capsys):
    """A sweep with sweep.flops_params=total records C = 6·N·D with N = all parameters
    (sweep_member.budget_params); the parabolas must use that N, not run_start's
    non-embedding one, or D* = C / (6·N*) is off by the embedding share."""
    root = tmp_path / "iso"
    for k, j, c, n, d, loss in _iso_grid():
        member = {"budget_flops": c, "budget_params": int(n)}
        # two thirds of a tiny model's parameters are embeddings: Kaplan's N is n / 3
        _write_run(root / f"c{k}-{j}", n / 3, d, loss, {"sweep_member": member})
    assert fit_cmd.main(["--isoflop", str(root), "--boot", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    n_stars = [b["n_opt"] for b in report["isoflop"]["budgets"]]
    for c, n_star in zip([1e16, 1e17, 1e18], n_stars):
        # the law's own minimum on the same 4-point grid, found independently by brute force
        grid = np.geomspace(1.5 * (c / 6) ** A_TRUE / 4, 1.5 * (c / 6) ** A_TRUE * 4, 2001)
        law = 1.69 + 406.4 / grid ** 0.34 + 410.7 / (c / (6 * grid)) ** 0.28
        assert n_star == pytest.approx(grid[np.argmin(law)], rel=0.25)
