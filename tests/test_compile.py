"""`scaling compile`: AOT compile on fake devices from abstract shapes; memory and FLOPs."""
import json

import pytest

from scaling.commands import compile as compile_cmd

TINY = ["--config", "experiments/gpt2.py:tiny", "--config.model.num_layers=2",
        "--config.model.width=64", "--config.model.num_heads=8", "--config.model.mlp_dim=256",
        "--config.model.max_len=32", "--config.data.seq_len=32"]


_REPORTS = {}


def report(capsys, *args):
    """The --json report (cached per arguments: tests share the 1-device batch-8 compile)."""
    if args not in _REPORTS:
        # 2 layers unrolled: one compile (scanned would add two FLOP-counting compiles).
        argv = [*TINY, *args, "--json", "--config.model.scan_layers=False"]
        assert compile_cmd.main(argv) == 0
        _REPORTS[args] = json.loads(capsys.readouterr().out)
    return _REPORTS[args]


def test_memory_grows_with_batch(capsys):
    small = report(capsys, "--mesh", "data=1", "--config.train.batch_size=8")
    large = report(capsys, "--mesh", "data=1", "--config.train.batch_size=64")
    assert large["memory_per_device"]["temporaries"] > 2 * small["memory_per_device"]["temporaries"]
    assert large["memory_per_device"]["peak"] > small["memory_per_device"]["peak"]
    # Same parameters: the train state part of the arguments barely moves (batch only).
    state = small["train_state_bytes_total"]
    assert small["memory_per_device"]["arguments"] >= state
    # FLOPs scale with the batch, and XLA's count is near the analytic one.
    assert large["flops_per_device"]["xla"] == pytest.approx(8 * small["flops_per_device"]["xla"],
                                                             rel=0.05)
    assert 0.7 < small["flops_per_device"]["xla_over_analytic"] < 1.4


def test_memory_per_device_shrinks_with_fsdp(capsys):
    one = report(capsys, "--mesh", "data=1", "--config.train.batch_size=8")  # fsdp=1
    four = report(capsys, "--mesh", "fsdp=4", "--config.train.batch_size=8")
    state = one["train_state_bytes_total"]
    assert four["devices"] == 4 and four["train_state_bytes_total"] == state
    assert one["memory_per_device"]["arguments"] > 3 * four["memory_per_device"]["arguments"]
    assert one["memory_per_device"]["peak"] > four["memory_per_device"]["peak"]


def test_text_report_scans_and_checks_the_fit(capsys):
    # One layer: scanned, without the two extra FLOP-counting compiles of deeper models.
    argv = [*TINY, "--config.model.num_layers=1", "--mesh", "data=2,tensor=2",
            "--device", "tpu-v5e"]
    assert compile_cmd.main(argv) == 0
    out = capsys.readouterr().out
    assert "note: model.scan_layers=True" in out
    assert "on 4 device(s): data=2 x tensor=2" in out
    assert "fits on tpu-v5e (16.00 GiB HBM)" in out
    assert "XLA / analytic" in out


@pytest.mark.parametrize("args, message", [
    (["--mesh", "data=3"], "train.batch_size: the micro-batch of 16 sequences is not divisible"),
    (["--mesh", "model=2"], "--mesh: 'model=2' is not one of data, fsdp, tensor=SIZE"),
    (["--mesh", "tensor=8", "--config.model.num_heads=4"],
     "parallel.mesh.tensor: model.num_heads=4 is not divisible by tensor=8"),
    (["--device", "tpu-v9"], "--device: unknown 'tpu-v9'"),
    (["--config.parallel.rules=default,colour=tensor"], "unknown logical axis 'colour'"),
])
def test_bad_input_is_one_line(capsys, args, message):
    assert compile_cmd.main([*TINY, *args, "--config.model.scan_layers=False"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
