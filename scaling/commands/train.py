"""`scaling train --config experiments/gpt2.py:tiny --workdir runs/demo [--config.a.b=v ...]`.

Any config field can be overridden in the ml_collections way, e.g.
    --config.train.steps=200 --config.optim.lr=1e-3
Bad input (config, data, mesh) exits with code 2 and a one-line message before compiling.
"""
from __future__ import annotations

import sys

from absl import flags

from scaling.configs import ConfigError, new_flags, parse


def main(argv: list[str]) -> int:
    fv = new_flags()
    flags.DEFINE_string("workdir", None, "run directory (config, metrics, checkpoints)",
                        flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv):
        print(__doc__)
        print(fv.main_module_help() if hasattr(fv, "main_module_help") else "")
        return 0
    try:
        parse(fv, argv, prog="scaling train")
        if fv.config is None:
            raise ConfigError("--config: required, e.g. --config experiments/gpt2.py:tiny")
        if not fv.workdir:
            raise ConfigError("--workdir: required, e.g. --workdir runs/demo")
        from scaling import train  # heavy imports only once the flags are good
        train.validate(fv.config)
    except ValueError as e:  # ConfigError is a ValueError
        print(f"scaling train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    train.run(fv.config, fv.workdir)
    return 0
