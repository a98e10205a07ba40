"""Loading experiment configs: `path/to/file.py:variant` plus `--config.a.b=value` overrides.

Flags are parsed by absl with ml_collections' `config_flags`, exactly as in big_vision and
the Flax examples, but into a private FlagValues so that commands can be called as library
functions (and from tests) without touching absl's global flags.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections
from absl import flags
from ml_collections import config_flags


class ConfigError(ValueError):
    """A bad config or command-line flag; the message is one line naming the field."""


def new_flags(argv: list[str], prog: str = "scaling",
              config_default: str | None = None) -> flags.FlagValues:
    """A FlagValues with `--config` (a config file with optional :variant and overrides).

    `argv` must be the arguments that will be parsed: config_flags finds the
    `--config.a.b=v` overrides in it (by default it would read sys.argv, which is wrong when
    a command is called as a function).
    """
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", default=config_default, flag_values=fv,
                                    help_string="experiment config, e.g. experiments/gpt2.py:tiny",
                                    lock_config=True, sys_argv=[prog, *argv])
    return fv


def parse(fv: flags.FlagValues, argv: list[str], prog: str = "scaling") -> list[str]:
    """Parse argv into fv; raise ConfigError with absl's one-line message on bad flags."""
    try:
        return fv([prog, *argv])
    except flags.Error as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ConfigError(_one_line(e)) from None


def new_run_flags(argv: list[str], prog: str, workdir_help: str) -> flags.FlagValues:
    """`--config` plus `--workdir`, for the commands that write a run directory."""
    fv = new_flags(argv, prog)
    flags.DEFINE_string("workdir", None, workdir_help, flag_values=fv)
    return fv


def parse_run(fv: flags.FlagValues, argv: list[str], prog: str, example_config: str,
              example_workdir: str):
    """Parse; return (config, workdir), or raise ConfigError naming the missing flag."""
    parse(fv, argv, prog)
    if fv.config is None:
        raise ConfigError(f"--config: required, e.g. --config {example_config}")
    if not fv.workdir:
        raise ConfigError(f"--workdir: required, e.g. --workdir {example_workdir}")
    return fv.config, fv.workdir


def load(path_and_variant: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """Load `experiments/gpt2.py:tiny` as a library call (tests, sweeps, `scaling params`)."""
    path, _, variant = path_and_variant.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such config file {path!r}")
    spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        config = module.get_config(variant) if variant else module.get_config()
    except ValueError as e:
        raise ConfigError(_one_line(e)) from None
    for key, value in (overrides or {}).items():
        _set(config, key, value)
    return config


def _set(config, dotted: str, value):
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise ConfigError(f"--config.{dotted}: no such field")
    node[leaf] = value


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__
