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
    """Parse argv into fv; raise ConfigError with one readable line on bad flags."""
    _check_config_file(argv)
    try:
        rest = fv([prog, *argv])
        if "config" in fv and fv["config"].present:
            fv.config  # noqa: B018  (a config file that failed to load raises here)
        return rest
    except flags.Error as e:
        raise ConfigError(_flag_error(str(e))) from None
    except KeyError as e:  # ml_collections: an override of a field the config lacks
        raise ConfigError(_unknown_field(e, argv)) from None
    except (ValueError, AttributeError, TypeError, OSError) as e:
        if isinstance(e.args[0] if e.args else None, KeyError):
            raise ConfigError(_unknown_field(e.args[0], argv)) from None
        raise ConfigError(_one_line(e)) from None


def _check_config_file(argv: list[str]) -> None:
    """`--config path[:variant]` must name an existing file (else absl prints a traceback)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = value.partition(":")[0]
        if not os.path.isfile(path):
            raise ConfigError(f"--config: no such config file {path!r}, e.g. "
                              "experiments/gpt2.py:tiny")


def _flag_error(text: str) -> str:
    """absl's message, reduced to its informative line.

    A config file whose get_config raised carries the whole traceback; its last line is the
    reason (e.g. an unknown variant). Other flag errors are one line already.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "Error whilst parsing config file" in lines[0] and len(lines) > 1:
        reason = lines[-1]
        for prefix in ("ValueError: ", "KeyError: ", "TypeError: ", "AttributeError: "):
            reason = reason.removeprefix(prefix)
        return reason
    return lines[0].removeprefix("flag ")


def _unknown_field(error: KeyError, argv: list[str]) -> str:
    """`--config.train.stepz: no such field; did you mean "steps"?` from ml_collections'
    KeyError, whose text is the quoted key plus, sometimes, a suggestion line."""
    text = str(error.args[0]) if error.args else ""
    key, _, hint = text.partition("\n")
    key = key.strip().strip("'\"")
    overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
    flag = next((f for f in overrides if key in f.split(".")[1:]), f"--config.{key}")
    if hint.strip().startswith("Did you mean") and '"' in hint:
        suggestion = hint.split('"')[1]
        return f"{flag}: no such field; did you mean {suggestion!r}?"
    parent = flag.split(".")[1:flag.split(".").index(key)]
    known = _fields_of(argv, parent)
    where = ".".join(parent) or "the config"
    return f"{flag}: no such field" + (f"; {where} has: {', '.join(known)}" if known else "")


def _fields_of(argv: list[str], dotted: list[str]) -> list[str]:
    """The field names of section `dotted` of the --config file (for error messages)."""
    path = next((argv[i + 1] if a == "--config" else a.split("=", 1)[1]
                 for i, a in enumerate(argv)
                 if (a == "--config" and i + 1 < len(argv)) or a.startswith("--config=")), None)
    try:
        node = load(path)
        for name in dotted:
            node = node[name]
        return sorted(node.keys())
    except Exception:  # noqa: BLE001  (only a hint: the error stands without it)
        return []


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
