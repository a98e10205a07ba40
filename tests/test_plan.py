"""The planner: parameter/FLOP/memory arithmetic against hand computations, the size table."""
import pytest

from experiments import size_table
from scaling import plan as plan_lib
from scaling.commands import plan as plan_cmd
from scaling.config_loading import load


def test_small_config_against_hand_computation():
    # gpt2 tiny: L=4, d=128, 4 heads, F=512, byte vocab 384, T=128, batch 16, float32.
    config = load("experiments/gpt2.py:tiny")
    config.parallel.mesh.update(data=2, fsdp=2, tensor=2)
    p = plan_lib.plan(config, devices=8, device="h100", mfu=0.5)

    embed = 384 * 128 + 128 * 128                         # tokens + positions (tied head)
    layer = (4 * 128 * 128 + 4 * 128) + (2 * 128 * 512 + 512 + 128) + 2 * 2 * 128
    params = embed + 4 * layer + 2 * 128                   # + final LayerNorm
    assert p["params"] == params == 858_880
    assert p["flops_per_token"] == 6 * (4 * (4 * 128**2 + 2 * 128 * 512) + 384 * 128) \
        + 12 * 4 * 128 * 128
    assert p["tokens"] == 20 * params
    assert p["train_flops"] == pytest.approx(p["flops_per_token"] * 20 * params)
    assert p["seconds"] == pytest.approx(p["train_flops"] / (8 * 989e12 * 0.5))
    assert p["device_hours"] == pytest.approx(p["seconds"] * 8 / 3600)

    m = p["memory"]
    assert m["params"] == 4 * params / 4                   # fp32, split over fsdp*tensor = 4
    assert m["grads"] == 4 * params / 4
    assert m["optimizer"] == 8 * params / 4
    # Korthikanti's rule of thumb, kept as a function: s*b*h*(10 + 24/t + 5*a*s/(h*t))
    # bytes at 16 bit; b = 16/(data*fsdp) = 4 rows, t = 2; float32 doubles it.
    per_layer = 128 * 4 * 128 * (10 + 24 / 2 + 5 * 4 * 128 / (128 * 2)) * 2
    assert plan_lib.activation_bytes_per_layer(128, 4, 128, 4, 2, 4) == per_layer == 4_194_304
    # The activations are traced (tests/test_plan_vs_xla.py checks them against XLA).
    assert 0 < m["activations_remat"] < m["activations"]
    assert m["grad_accumulation"] == m["compute_copies"] == 0      # 1 micro-batch, float32
    assert m["logits"] == 128 * 4 * 384 * 4 / 2
    assert m["total"] == 4 * params + m["activations"] + m["logits"]
    assert p["fits"] and p["fits_remat"]


def test_devices_fill_the_configs_free_axis_and_mesh_overrides():
    config = load("experiments/gpt2.py:tiny")                # data=-1
    assert plan_lib.plan(config, devices=8)["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    p = plan_lib.plan(config, mesh_text="fsdp=4,tensor=2")
    assert p["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2} and p["devices"] == 8
    with pytest.raises(ValueError, match="--mesh"):
        plan_lib.plan(config, devices=4, mesh_text="fsdp=8")


def test_plan_command_prints_every_figure(capsys):
    assert plan_cmd.main(["--config", "experiments/gpt2.py:xl", "--devices", "8",
                          "--device", "h100", "--mfu", "0.45"]) == 0
    out = capsys.readouterr().out
    for text in ("1,557,611,200", "FLOPs/token", "optimal tokens", "training FLOPs",
                 "8 x h100 at 45% MFU", "device-hours", "parameters (fp32)",
                 "gradients (fp32)", "AdamW moments", "activations, no remat",
                 "activations, full remat", "of HBM", "AOT compile"):
        assert text in out, text


def test_plan_bad_input_exits_2(capsys):
    assert plan_cmd.main(["--config", "experiments/gpt2.py:tiny", "--device", "tpu-v9"]) == 2
    assert capsys.readouterr().err.startswith("scaling plan: error: --device: unknown")
    assert plan_cmd.main(["--config", "experiments/gpt2.py:tiny", "--mfu", "1.5"]) == 2


def test_table_lists_the_eight_rows_with_training_compute(capsys):
    assert plan_cmd.main(["--table", "--devices", "8", "--device", "h100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:-1]
    assert "train FLOPs" in header and "time" in header
    names = [r.name for r in size_table.ROWS if r.in_table]
    assert len(names) == len(rows) == 8
    for name, row in zip(names, rows):
        assert row.startswith(name)
    assert "512 V100, 9 days" in rows[-1]                  # Megatron's published figure


def test_aot_figure_is_printed_beside_the_estimate():
    p = plan_lib.plan(load("experiments/gpt2.py:tiny"), devices=1)
    text = plan_lib.format_plan(p, {"memory_per_device": {"peak": 2**30}, "remat": "none"})
    assert "AOT compile (XLA) peak" in text and "1.00 GiB" in text
    assert "n/a   (compile failed)" in plan_lib.format_plan(p, {"error": "compile failed"})
