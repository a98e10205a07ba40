"""The planner's memory per device against XLA's compiled memory analysis (independent
reference: the real train step, lowered and compiled for the same mesh of fake devices)."""
import pytest

from scaling import plan as plan_lib
from scaling.commands import compile as compile_cmd
from scaling.config_loading import load

# Small float32 models (the CPU compiler keeps float32 copies of bfloat16 tensors, which an
# accelerator does not: bfloat16 would compare the CPU's choices, not the planner's).
BASE = dict(num_layers=2, width=128, num_heads=4, mlp_dim=512, vocab_size=2048, max_len=128,
            kernels="reference", scan_layers=True)
CASES = {
    "no remat": ({}, {}),
    "full remat": ({"model.remat": "full"}, {}),
    "micro-batches + fsdp": ({"train.micro_batches": 4}, {"fsdp": 2}),
    "tensor parallel": ({}, {"tensor": 2}),
}


def _xla_peak(config, mesh) -> int:
    step, _, _ = compile_cmd._lower_and_compile(config, mesh)
    m = step.fn.memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
            + m.temp_size_in_bytes)


@pytest.mark.parametrize("case", CASES)
def test_planner_memory_within_15_percent_of_xla(case):
    overrides, mesh_axes = CASES[case]
    config = load("experiments/gpt2.py:tiny")
    config.model.update(BASE)
    config.data.seq_len, config.train.batch_size = 128, 16
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    mesh = {"data": 1, "fsdp": 1, "tensor": 1, **mesh_axes}
    config.parallel.mesh.update(mesh)
    planned = plan_lib.plan(config, mesh_text=",".join(f"{a}={s}" for a, s in mesh.items()))
    assert planned["memory"]["total_config"] == pytest.approx(_xla_peak(config, mesh), rel=0.15)
