"""`scaling COMMAND ...`: a thin dispatcher; each command lives in `scaling/commands/<name>.py`.

Commands are imported lazily so that `scaling report` does not pay for importing JAX models,
and each command module owns its own argument parser (`main(argv) -> exit code`).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train a model from an experiment config",
    "params": "parameter counts of the size table, from the real model definitions",
    "compile": "ahead-of-time compile a train step for a target mesh; memory and FLOPs",
    "sample": "generate text from a trained decoder",
    "caption": "caption images with a captioning run; BLEU-4 and exact-match on a split",
    "report": "one row per run: params, loss, throughput, MFU, memory",
    "plot": "loss and throughput curves of runs",
    "sweep": "train a family of model sizes for a token or FLOP budget",
    "fit": "fit scaling laws (L(N), L(C); --isoflop: Chinchilla approaches 2 and 3)",
    "plan": "parameters, FLOPs, time and memory of a config on a cluster",
    "import-hf": "a Hugging Face model directory -> a run directory (checkpoint at step 0)",
    "export-hf": "a run's checkpoint -> a Hugging Face model directory",
    "probe-peak": "measure this CPU's matmul peak (MFU's denominator on CPU) and cache it",
    "prepare-data": "tokenize and pack a dataset once into shards (data.dataset=prepared:DIR)",
    "attention-map": "a captioner's attention over the image for every word, as a figure",
}


def _usage() -> str:
    lines = ["usage: scaling COMMAND [ARGS...]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "`scaling COMMAND --help` for a command's options."]
    return "\n".join(lines)


# Commands that run train or sample steps restart once with malloc tunables that keep XLA
# CPU's per-step buffers for reuse (scaling/runtime/host_malloc.py decides when: CPU hosts).
STEP_COMMANDS = ("train", "sweep", "sample", "caption")


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the program's entry point (an in-process caller passes argv)
        from scaling import runtime  # noqa: PLC0415
        runtime.setup(reuse_step_buffers=len(sys.argv) > 1 and sys.argv[1] in STEP_COMMANDS)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"scaling: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"scaling.commands.{name.replace('-', '_')}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
