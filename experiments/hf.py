"""A run directory's own config (e.g. one written by `scaling import-hf`) as an experiment,
fine-tuning from its latest parameters:

    scaling import-hf ./gpt2 --family gpt2 --workdir runs/gpt2-hf
    scaling train --config experiments/hf.py:runs/gpt2-hf --workdir runs/gpt2-ft \\
        --config.train.steps=200

The variant is the run directory. Every field of its config.json can still be overridden;
checkpoint.init_from defaults to the directory itself.
"""
import json
import os

import ml_collections

from scaling.config import base_config


def get_config(run_dir: str = ""):
    path = os.path.join(run_dir, "config.json")
    if not run_dir or not os.path.isfile(path):
        raise ValueError(f"experiments/hf.py: give a run directory with a config.json as the "
                         f"variant (experiments/hf.py:DIR); got {run_dir!r}")
    with open(path) as f:
        saved = json.load(f)
    config = base_config()
    for section, values in saved.items():
        if isinstance(values, dict) and section in config:
            config[section].update(values)
        else:
            config[section] = values
    config.checkpoint.init_from = os.path.abspath(run_dir)
    return ml_collections.ConfigDict(config)
