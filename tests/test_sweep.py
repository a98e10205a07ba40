"""Sweeps: member configs from the size ratios and budgets, skip/resume on restart, --emit."""
import json
import os
import shlex

import numpy as np
import pytest

from scaling import sweep
from scaling.commands import sweep as sweep_cmd
from scaling.config_loading import load, new_flags, parse
from tests._util import run_on_one_device


def test_tiny_sweep_spans_ten_times_in_gpt2_shapes():
    members = sweep.members(load("experiments/sweep.py:tiny"))
    assert len(members) >= 5
    n = [m.non_embedding_params for m in members]
    assert n == sorted(n) and n[-1] / n[0] >= 10
    for m in members:
        assert 32 <= m.width / m.layers <= 64          # GPT-2 rows: 64 (small) .. 33 (xl)
        assert m.config.model.mlp_dim == 4 * m.width
        assert "sweep" not in m.config
        evals = -(-m.steps // m.config.train.eval_every)
        assert evals >= 5                               # an L(C) curve per run
        assert m.config.checkpoint.every == m.config.train.eval_every   # resumable


def test_flops_budget_gives_every_member_the_same_compute():
    config = load("experiments/sweep.py:tiny", {"sweep.budget": "flops", "sweep.flops": 1e12})
    members = sweep.members(config)
    tokens_per_step = config.train.batch_size * config.data.seq_len
    for m in members:
        assert m.steps == max(10, -(-int(1e12 / (6 * m.non_embedding_params)) //
                                    tokens_per_step)) or \
            abs(m.flops_6nd - 1e12) / 1e12 < 0.05
        assert m.flops_6nd == pytest.approx(1e12, rel=0.05)
    assert members[0].tokens > members[-1].tokens       # small models see more data


def test_learning_rate_rule():
    kaplan = sweep.members(load("experiments/sweep.py:tiny"))
    lrs = [m.config.optim.lr for m in kaplan]
    assert lrs == sorted(lrs, reverse=True)                  # smaller for bigger models
    assert lrs[0] == pytest.approx(0.003239 - 0.0001395 * np.log(kaplan[0].non_embedding_params),
                                   abs=1e-6)
    constant = sweep.members(load("experiments/sweep.py:tiny", {"sweep.lr_rule": "constant",
                                                                 "optim.lr": 5e-4}))
    assert {m.config.optim.lr for m in constant} == {5e-4}


def test_member_variant_is_a_single_run_config():
    members = sweep.members(load("experiments/sweep.py:tiny"))
    single = load("experiments/sweep.py:tiny.3")
    assert single.to_dict() == members[3].config.to_dict()
    with pytest.raises(ValueError, match="no member"):
        load("experiments/sweep.py:tiny.99")


def test_bad_budget_is_one_line(capsys):
    assert sweep_cmd.main(["--config", "experiments/sweep.py:tiny", "--workdir", "x",
                           "--config.sweep.budget=steps"]) == 2
    assert capsys.readouterr().err.strip() == ("scaling sweep: error: sweep.budget: unknown "
                                               "'steps'; allowed: 'tokens', 'flops'")


MICRO = ["--config.sweep.sizes=1,16,2;2,32,2", "--config.sweep.min_steps=1",
         "--config.sweep.tokens=640", "--config.sweep.evals=2", "--config.data.seq_len=32",
         "--config.train.batch_size=4", "--config.train.eval_steps=1",
         "--config.metrics.device_peak_tflops=1.0"]


def _micro_members(data_dir):
    fv = new_flags(["--config", "experiments/sweep.py:tiny", *MICRO])
    parse(fv, ["--config", "experiments/sweep.py:tiny", *MICRO])
    fv.config.data.data_dir = data_dir
    return sweep.members(fv.config)


def test_emit_prints_one_working_command_per_member(capsys):
    argv = ["--config", "experiments/sweep.py:tiny", "--workdir", "runs/s", "--emit", *MICRO]
    assert sweep_cmd.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    members = _micro_members("")
    assert len(lines) == len(members) == 2
    for line, m in zip(lines, members):
        args = shlex.split(line)
        assert args[:2] == ["scaling", "train"]
        assert args[args.index("--workdir") + 1] == os.path.join("runs/s", m.name)
        train_argv = [a for a in args[2:] if a != "--workdir"
                      and not a.startswith("runs/")]
        fv = new_flags(train_argv, prog="scaling train")
        parse(fv, train_argv, prog="scaling train")        # the train command's own parser
        emitted, expected = fv.config.to_dict(), m.config.to_dict()
        assert emitted["experiment"] == expected["experiment"]
        assert emitted["sweep_member"]["budget_tokens"] == 640           # the override's budget
        for section in ("model", "train", "data", "optim", "checkpoint", "sweep_member"):
            assert emitted[section] == {**expected[section],
                                        **({"data_dir": ""} if section == "data" else {})}


def test_sweep_runs_members_skips_finished_and_resumes(tmp_path, data_dir):
    members = _micro_members(data_dir)
    trained = []

    def train_fn(config, run_dir):
        trained.append(os.path.basename(run_dir))
        return run_on_one_device(config, run_dir)

    workdir = str(tmp_path / "sweep")
    first = sweep.run_sweep(members, workdir, train_fn=train_fn, log=lambda _: None)
    assert first["ran"] == [m.name for m in members] and first["skipped"] == []
    for m in members:
        assert sweep.is_finished(os.path.join(workdir, m.name))
        # train.run's config.json carries the member's fingerprint: what reuse checks.
        assert sweep.stored_fingerprint(os.path.join(workdir, m.name)) == m.fingerprint

    trained.clear()
    second = sweep.run_sweep(members, workdir, train_fn=train_fn, log=lambda _: None)
    assert trained == [] and second["ran"] == [] and len(second["skipped"]) == 2

    # Interrupted: the last member lost its run_end (as if killed after its last checkpoint).
    metrics = os.path.join(workdir, members[-1].name, "metrics.jsonl")
    with open(metrics) as f:
        kept = [line for line in f if '"run_end"' not in line]
    with open(metrics, "w") as f:
        f.writelines(kept)
    third = sweep.run_sweep(members, workdir, train_fn=train_fn, log=lambda _: None)
    assert trained == [members[-1].name] and third["ran"] == [members[-1].name]
    with open(metrics) as f:
        records = [json.loads(line) for line in f]
    # Its last checkpoint is the final one: restored, verified, nothing trained again.
    assert records[-1]["event"] == "run_end" and records[-1]["step"] == members[-1].steps
    assert records[:-1] == [json.loads(line) for line in kept]
    with open(os.path.join(workdir, "sweep.json")) as f:
        assert len(json.load(f)["members"]) == 2


# ---- identity: a changed budget makes new members; --status; short members

def _fake_train(trained):
    """Stands in for scaling.train.run: writes config.json and a finished metrics.jsonl."""
    def train_fn(config, run_dir):
        os.makedirs(run_dir, exist_ok=True)
        trained.append(os.path.basename(run_dir))
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f)
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            for record in ({"event": "run_start", "params": 1},
                           {"step": config.train.steps, "loss": 1.0},
                           {"event": "run_end", "step": config.train.steps}):
                f.write(json.dumps(record) + "\n")
    return train_fn


def _members(*overrides):
    argv = ["--config", "experiments/sweep.py:tiny", *MICRO, *overrides]
    fv = new_flags(argv)
    parse(fv, argv)
    return sweep.members(fv.config)


def _snapshot(workdir):
    """{member dir: its metrics.jsonl, or None} for every directory under workdir."""
    def read(path):
        return open(path).read() if os.path.isfile(path) else None
    return {name: read(os.path.join(workdir, name, "metrics.jsonl"))
            for name in sorted(os.listdir(workdir)) if name != "sweep.json"}


def test_changed_budget_trains_new_members_and_keeps_the_old(tmp_path):
    workdir, trained = str(tmp_path), []
    budget_a = _members("--config.sweep.tokens=640")
    budget_b = _members("--config.sweep.tokens=1280")
    assert {m.steps for m in budget_a} == {5} and {m.steps for m in budget_b} == {10}

    sweep.run_sweep(budget_a, workdir, train_fn=_fake_train(trained), log=lambda _: None)
    assert trained == [m.name for m in budget_a]
    after_a = _snapshot(workdir)

    trained.clear()
    result = sweep.run_sweep(budget_b, workdir, train_fn=_fake_train(trained), log=lambda _: None)
    assert trained == [m.name for m in budget_b] and result["skipped"] == []
    assert not {m.name for m in budget_a} & {m.name for m in budget_b}
    after_b = _snapshot(workdir)
    assert {k: after_b[k] for k in after_a} == after_a        # the old members are untouched
    for m in budget_b:                                        # each trained for its own budget
        assert f'"step": {m.steps}' in after_b[m.name]

    trained.clear()
    again = sweep.run_sweep(budget_a, workdir, train_fn=_fake_train(trained), log=lambda _: None)
    assert trained == [] and again["skipped"] == [m.name for m in budget_a]


@pytest.mark.parametrize("override", ["--config.optim.warmup_steps=3",
                                      "--config.optim.decay=linear",
                                      "--config.train.batch_size=2", "--config.data.seq_len=16",
                                      "--config.data.tokenizer=sentencepiece",
                                      "--config.data.corpus=/some/texts",
                                      "--config.sweep.lr_rule=constant"])
def test_schedule_batch_and_data_are_part_of_a_members_name(override):
    base, changed = _members(), _members(override)
    assert all(a.name != b.name and a.fingerprint != b.fingerprint
               for a, b in zip(base, changed))
    assert [m.name for m in _members()] == [m.name for m in base]     # deterministic
    # Where the data is stored, logging and checkpoint cadence are not.
    assert [m.name for m in _members("--config.data.data_dir=/elsewhere",
                                     "--config.checkpoint.keep=3")] == [m.name for m in base]


def test_a_directory_of_another_run_is_refused_not_reused(tmp_path):
    members = _members()
    os.makedirs(tmp_path / members[0].name)
    (tmp_path / members[0].name / "config.json").write_text(
        json.dumps({"sweep_member": {"fingerprint": "00000000"}}))
    with pytest.raises(ValueError, match="holds another run .fingerprint 00000000"):
        sweep.run_sweep(members, str(tmp_path), train_fn=_fake_train([]), log=lambda _: None)


def test_status_lists_done_partial_and_missing_without_training(tmp_path, capsys):
    members = _members("--config.sweep.sizes=1,16,2;2,32,2;2,48,3")
    workdir = str(tmp_path)
    _fake_train([])(members[0].config, os.path.join(workdir, members[0].name))
    partial = os.path.join(workdir, members[1].name)
    _fake_train([])(members[1].config, partial)
    with open(os.path.join(partial, "metrics.jsonl"), "w") as f:    # killed at step 3 of 5
        f.write(json.dumps({"step": 3, "loss": 2.0}) + "\n")
    os.makedirs(os.path.join(workdir, "0-L1-d16-D320-0badbeef"))     # an older budget's member
    before = _snapshot(workdir)

    argv = ["--config", "experiments/sweep.py:tiny", "--workdir", workdir, "--status", *MICRO,
            "--config.sweep.sizes=1,16,2;2,32,2;2,48,3"]
    assert sweep_cmd.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["member", "N", "budget", "tokens", "6ND", "steps", "state"]
    rows = {line.split()[0]: line for line in out[1:4]}
    assert rows[members[0].name].endswith("done")
    assert rows[members[1].name].endswith("partial (last step 3 of 5)")
    assert rows[members[2].name].endswith("missing")
    for m in members:
        assert f"{m.non_embedding_params:,}" in rows[m.name] and "tokens=640" in rows[m.name]
    assert "1 other run dir(s)" in out[4] and "0-L1-d16-D320-0badbeef" in out[4]
    assert _snapshot(workdir) == before                     # nothing trained or written
    assert sorted(os.listdir(workdir)) == sorted(before)
    assert not os.path.exists(os.path.join(workdir, members[2].name))


def test_short_members_warn_and_strict_refuses(capsys):
    argv = ["--config", "experiments/sweep.py:tiny", "--workdir", "runs/s", "--emit", *MICRO,
            "--config.optim.warmup_steps=2", "--config.sweep.tokens=2560"]    # 20 steps each
    assert sweep_cmd.main(argv) == 0
    err = capsys.readouterr().err.strip().splitlines()
    members = _members("--config.optim.warmup_steps=2", "--config.sweep.tokens=2560")
    assert len(err) == 2                                    # 20 >= 5 x 2 warmup, but 20 < 50
    for line, m in zip(err, members):
        assert line.startswith(f"warning: {m.name}: 20 steps (needs >= 50)")
        assert "raise sweep.tokens or lower train.batch_size" in line

    assert sweep_cmd.main([*argv, "--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (f"scaling sweep: error: {members[0].name}: 20 steps (needs "
                                    ">= 50): the global batch of 4 x 32 tokens is too large for "
                                    "its budget; raise sweep.tokens or lower train.batch_size "
                                    "(1 more member(s) too short)")

    # Warmup: 100 steps but a 40-step warmup; a budget large enough passes --strict.
    warm = ["--config.optim.warmup_steps=40", "--config.sweep.tokens=12800"]
    assert sweep_cmd.main([*argv, *warm, "--strict"]) == 2
    assert ("100 steps for optim.warmup_steps=40 (needs >= 5x warmup = 200); raise "
            "sweep.tokens or lower optim.warmup_steps") in capsys.readouterr().err
    assert sweep_cmd.main([*argv, "--config.optim.warmup_steps=10",
                           "--config.sweep.tokens=6400", "--strict"]) == 0    # 50 steps
    assert capsys.readouterr().err == ""


def test_check_member_flags_the_issue_case():
    """The reported iso-FLOP sweep: its largest member got 33 steps with a 20-step warmup."""
    members = sweep.members(load("experiments/sweep.py:tiny", {"sweep.budget": "flops",
                                                                "sweep.flops": 5e11}))
    assert members[-1].steps == 33
    assert "33 steps for optim.warmup_steps=20" in sweep.check_member(members[-1])
    assert sweep.check_member(members[0]) is None


def test_budget_is_recorded_for_fits(tmp_path):
    from scaling import runs

    members = sweep.members(load("experiments/sweep.py:tiny", {"sweep.budget": "flops",
                                                                "sweep.flops": 2e12}))
    _fake_train([])(members[1].config, str(tmp_path))
    row = runs.summarize(runs.read_run(tmp_path))
    assert row["budget_flops"] == 2e12 and row["budget_tokens"] is None
    record = members[1].config.sweep_member
    assert record.flops_6nd == pytest.approx(6 * record.non_embedding_params * record.tokens)
    assert record.fingerprint in members[1].name and "C2e12" in members[1].name


def test_isoflop_grid_gives_each_budget_its_compute():
    config = load("experiments/sweep.py:isoflop")
    members = sweep.members(config)
    tokens_per_step = config.train.batch_size * config.data.seq_len
    by_budget = {}
    for m in members:
        by_budget.setdefault(m.config.sweep_member.budget_flops, []).append(m)
    assert len(by_budget) == 3 and all(len(g) == 4 for g in by_budget.values())
    for budget, group in by_budget.items():
        for m in group:
            # C = 6·N·D with N every parameter (Chinchilla's count), D rounded up to whole
            # steps: within one step's compute above C.
            assert m.config.sweep_member.budget_params == m.params > m.non_embedding_params
            assert budget <= 6 * m.params * m.tokens < budget + 6 * m.params * tokens_per_step
            assert m.steps >= max(sweep.MIN_STEPS, sweep.MIN_STEPS_PER_WARMUP_STEP
                                  * m.config.optim.warmup_steps)
            assert sweep.check_member(m) is None
            assert f"C{budget:.2g}".replace("e+", "e") in m.name
        n = [m.params for m in group]
        assert n == sorted(n) and n[-1] / n[0] >= 4          # sizes span the optimum
    smallest = [min(m.params for m in g) for _, g in sorted(by_budget.items())]
    assert smallest == sorted(smallest)                      # bigger budgets, bigger sizes


def test_flops_params_total_counts_embeddings():
    config = load("experiments/sweep.py:tiny", {"sweep.budget": "flops", "sweep.flops": 1e12})
    kaplan = sweep.members(config)
    config.sweep.flops_params = "total"
    chinchilla = sweep.members(config)
    for k, c in zip(kaplan, chinchilla):
        assert k.tokens / c.tokens == pytest.approx(c.params / c.non_embedding_params, rel=0.05)
        assert c.config.sweep_member.flops_params == "total"
    config.sweep.flops_params = "all"
    with pytest.raises(ValueError, match="sweep.flops_params: unknown 'all'"):
        sweep.members(config)


def test_grid_needs_one_size_list_per_budget():
    with pytest.raises(ValueError, match=r"sweep.sizes: 2 '\|'-separated size lists for 3 "):
        sweep.members(load("experiments/sweep.py:isoflop", {"sweep.sizes": "1,32,2|1,48,3"}))
    with pytest.raises(ValueError, match="sweep.flops: 'x' is not a number"):
        sweep.members(load("experiments/sweep.py:isoflop", {"sweep.flops": "x"}))


def test_cli_refuses_a_directory_of_another_run(tmp_path, capsys):
    members = _members()
    os.makedirs(tmp_path / members[1].name)
    (tmp_path / members[1].name / "config.json").write_text("{}")
    argv = ["--config", "experiments/sweep.py:tiny", "--workdir", str(tmp_path), *MICRO]
    assert sweep_cmd.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"scaling sweep: error: sweep: {tmp_path / members[1].name} holds another "
                   f"run (fingerprint None, this member's {members[1].fingerprint}); move it "
                   "away or use another --workdir")
    assert os.listdir(tmp_path) == [members[1].name]          # nothing trained
    assert sweep_cmd.main([*argv, "--status"]) == 0
    assert "other run" in capsys.readouterr().out
