"""What a resume says: the fields changed against the checkpoint, and a finished run's rerun."""
import json

import pytest

from scaling.commands import train as train_cmd

from test_checkpoint import cli_args, tiny_overrides


pytestmark = pytest.mark.usefixtures("compile_cache")  # same programs again and again

def _metrics(workdir):
    return (workdir / "metrics.jsonl").read_text()


def test_rerun_of_a_finished_run_says_so_and_does_nothing(data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    args = cli_args(tiny_overrides(data_dir, steps=2), workdir)
    assert train_cmd.main(args) == 0
    before = _metrics(workdir)
    capsys.readouterr()
    assert train_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert "already finished at step 2 (train.steps=2); nothing to do" in out, out
    assert "compiled in" not in out
    assert _metrics(workdir) == before  # no new records, no second run_start / compile event


def test_resume_prints_each_changed_field(data_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert train_cmd.main(cli_args(tiny_overrides(data_dir, steps=2, every=1), workdir)) == 0
    capsys.readouterr()
    assert train_cmd.main(cli_args(tiny_overrides(
        data_dir, steps=4, every=1, **{"optim.lr": 0.002}), workdir)) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("resuming with a changed config"))
    assert "optim.lr 0.003 -> 0.002" in line and "train.steps 2 -> 4" in line, line
    assert "learning-rate schedule is recomputed" in out
    steps = [json.loads(x)["step"] for x in _metrics(workdir).splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]


def _train_records(workdir):
    records = {}
    for line in _metrics(workdir).splitlines():
        r = json.loads(line)
        if "nonfinite_steps" in r:
            records[r["step"]] = r  # the latest record of a step counts
    return records


def test_record_after_a_resume_averages_the_same_window(data_dir, tmp_path):
    """Stopped at step 3 (log_every 4), resumed: the record at step 4 averages steps 1-4,
    as the uninterrupted run's does, not step 4 alone."""
    same = {"train.log_every": 4, "optim.decay": "constant", "optim.warmup_steps": 2}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train_cmd.main(cli_args(tiny_overrides(data_dir, steps=6, **same), whole)) == 0
    assert train_cmd.main(cli_args(tiny_overrides(data_dir, steps=3, **same), cut)) == 0
    assert train_cmd.main(cli_args(tiny_overrides(data_dir, steps=6, **same), cut)) == 0
    a, b = _train_records(whole), _train_records(cut)
    assert sorted(a) == [4, 6] and sorted(b) == [3, 4, 6]
    for step in (4, 6):
        assert abs(b[step]["loss"] - a[step]["loss"]) <= 1e-6 * abs(a[step]["loss"]), step
        assert abs(b[step]["accuracy"] - a[step]["accuracy"]) <= 1e-6, step


def test_interrupt_exits_130_with_one_line(monkeypatch, tmp_path, capsys):
    """A second Ctrl-C (KeyboardInterrupt from the signal handler) anywhere in a run."""
    from scaling import train

    def interrupted(config, workdir):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupted)
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir",
                           str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 130 and "\n" not in err, err
    assert err.startswith("scaling train: interrupted: a checkpoint save in progress is "
                          "abandoned"), err


def test_second_sigint_raises_keyboard_interrupt_first_only_sets_the_flag():
    import signal

    from scaling.stop import StopRequest

    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.reached(1) and stop.signal_name == "SIGINT"
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("a second SIGINT must interrupt")

