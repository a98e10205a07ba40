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
        for section in ("model", "train", "data", "optim", "checkpoint"):
            expected[section].pop("name", None)
            emitted[section].pop("name", None)
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
