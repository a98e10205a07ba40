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
    assert small["collectives"]["totals"]["total"] == 0  # one device: nothing to send


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
    # The step's collectives: gradients over data, activations over tensor.
    assert "collectives per step" in out and "per axes: " in out
    assert "all-reduce         data " in out and "all-reduce         tensor " in out


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


def test_recipe_micro_batches_keep_the_per_device_micro_batch():
    import ml_collections

    from scaling.mesh import recipe_micro_batches
    # A recipe of 512 sequences in 8 micro-batches on 8 fsdp devices: 8 rows per device.
    parallel = ml_collections.ConfigDict(dict(recipe_devices=8, mesh=dict(
        data=1, fsdp=-1, tensor=1)))
    train = ml_collections.ConfigDict(dict(batch_size=512, micro_batches=8))
    for sizes, want in (({"data": 1, "fsdp": 8, "tensor": 1}, 8),
                        ({"data": 4, "fsdp": 16, "tensor": 1}, 1),
                        ({"data": 1, "fsdp": 2, "tensor": 1}, 32),
                        ({"data": 1, "fsdp": 1, "tensor": 8}, 64),
                        ({"data": 3, "fsdp": 1, "tensor": 1}, 8)):   # 512 % 24: unchanged
        assert recipe_micro_batches(parallel, train, sizes) == want, sizes
    parallel.recipe_devices = 0
    assert recipe_micro_batches(parallel, train, {"data": 2, "fsdp": 1, "tensor": 1}) == 8


def test_recipe_variant_compiles_its_published_batch_without_tokenizer_files(capsys):
    # gpt2:small's recipe (512 x 1024 on 8 devices, 4 micro-batches), shrunk in depth and
    # width only, on a 2-device mesh: 16 micro-batches keep 16 rows per device.
    argv = ["--config", "experiments/gpt2.py:small", "--config.model.num_layers=1",
            "--config.model.width=32", "--config.model.num_heads=2",
            "--config.model.mlp_dim=64", "--config.model.vocab_size=64",
            "--config.data.tokenizer=sentencepiece_model:/no/such/file.model",
            "--mesh", "data=2", "--json"]
    assert compile_cmd.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["batch_size"], r["seq_len"], r["micro_batches"]) == (512, 1024, 16)
    assert r["dtype"] == "bfloat16" and any("micro_batches=16" in n for n in r["notes"])


def test_flops_count_every_micro_batch(capsys):
    # XLA counts a loop body once; the report must count all 4 micro-batches (uncounted,
    # it would read about a quarter). The optimizer's update, counted with each
    # micro-batch's copy of the step, adds a few percent on this tiny model.
    one = report(capsys, "--mesh", "data=1", "--config.train.batch_size=8")
    four = report(capsys, "--mesh", "data=1", "--config.train.batch_size=8",
                  "--config.train.micro_batches=4")
    assert four["flops_per_device"]["xla"] == pytest.approx(one["flops_per_device"]["xla"],
                                                            rel=0.1)
