"""`scaling prepare-data --config experiments/gpt2.py:tiny --out DIR [--processes N]`.

Tokenizes and packs the config's dataset (builtin, data.files or a TFDS name) once, offline,
into array_record shards plus DIR/meta.json; train on them with
`--config.data.dataset=prepared:DIR` (same tokenizer, seq_len and objective). Overrides work
as in `scaling train`, e.g. `--config.data.dataset=files --config.data.files='~/c/*.jsonl'`.
Bad input exits with code 2 and one line.
"""
from __future__ import annotations

import os
import sys

from absl import flags

from scaling.config_loading import ConfigError, new_flags, parse


def main(argv: list[str]) -> int:
    fv = new_flags(argv, "scaling prepare-data")
    flags.DEFINE_string("out", None, "directory to write the shards and meta.json into",
                        flag_values=fv)
    flags.DEFINE_integer("processes", os.cpu_count() or 1,
                         "tokenizing worker processes", flag_values=fv)
    flags.DEFINE_list("splits", ["train", "validation"], "splits to prepare", flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv):
        print(__doc__)
        return 0
    try:
        parse(fv, argv, "scaling prepare-data")
        if fv.config is None:
            raise ConfigError("--config: required, e.g. --config experiments/gpt2.py:tiny")
        if not fv.out:
            raise ConfigError("--out: required, e.g. --out data/prepared/gpt2")
        if fv.processes < 1:
            raise ConfigError(f"--processes: must be >= 1, got {fv.processes}")
        from scaling.data import prepare  # heavy imports only once the flags are good
        meta = prepare.prepare(fv.config, fv.out, processes=fv.processes,
                                splits=tuple(fv.splits))
    except ValueError as e:  # ConfigError is a ValueError
        print(f"scaling prepare-data: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for split, info in meta["splits"].items():
        print(f"{split}: {info['documents']:,} documents, {info['tokens']:,} tokens, "
              f"{info['rows']:,} rows in {len(info['shards'])} shard(s)")
    print(f"train with: --config.data.dataset=prepared:{fv.out}")
    return 0
