"""Prepared datasets: a dataset tokenized and packed once, offline, into array_record shards.

`prepare.prepare(config, out_dir)` (the `scaling prepare-data` command) reads the documents of each
split of `config.data` (builtin, files or a TFDS name), tokenizes them in a process pool and
writes the chunks the pipeline would cut on the fly (packing.PackedChunks: for causal_lm
windows of seq_len + 1 ids with stride seq_len), one chunk per record as int32 bytes:

  DIR/meta.json                   tokenizer key, vocab size, seq_len, objective, chunk
                                  length/stride, dataset key, rows and shards per split
  DIR/train-00000.array_record    rows 0.. of the train split, in stream order
  DIR/validation-00000.array_record

`data.dataset="prepared:DIR"` reads these back (`PreparedChunks`), random access through
grain's ArrayRecordDataSource; the pipeline then orders, shards by host and batches them as
any other chunks, so a prepared run sees the batches an unprepared one would (the packed
regime: a prepared split is always packed, whatever data.pack_max_documents says).
"""
from __future__ import annotations

import json
import os

import numpy as np
from etils import epath

from scaling.data import objectives

PREFIX = "prepared:"
META = "meta.json"
SPLITS = ("train", "validation")
_ROWS_PER_SHARD_BYTES = 128 << 20   # about this many bytes of ids per shard file
_DOCS_PER_TASK = 1000               # documents per pool task (non-file sources)
OBJECTIVES = ("causal_lm", "mlm", "span_corruption", "permutation_lm")


def is_prepared(data_cfg) -> bool:
    return data_cfg.dataset.startswith(PREFIX)


def prepared_dir(data_cfg) -> str:
    path = data_cfg.dataset[len(PREFIX):]
    return path if "://" in path else os.path.expanduser(path)


def read_meta(directory: str) -> dict:
    """meta.json of a prepared directory; a one-line error naming data.dataset if absent."""
    path = epath.Path(directory) / META
    if not path.exists():
        raise ValueError(f"data.dataset: {directory!r} holds no {META}; write it with "
                         f"`scaling prepare-data --config ... --out {directory}`")
    return json.loads(path.read_text())


def check_meta(data_cfg, tokenizer) -> dict:
    """Raises a one-line ValueError naming the field the prepared data disagrees with.

    Returns:
      The meta dict.
    """
    directory = prepared_dir(data_cfg)
    meta = read_meta(directory)
    fix = f"set it to match, or prepare {directory} again"
    if meta["tokenizer"] != tokenizer.key:
        raise ValueError(f"data.tokenizer: {directory} was prepared with tokenizer "
                         f"{meta['tokenizer']!r}, this config's is {tokenizer.key!r}; {fix}")
    if meta["seq_len"] != data_cfg.seq_len:
        raise ValueError(f"data.seq_len: {directory} was prepared for seq_len="
                         f"{meta['seq_len']}, this config has {data_cfg.seq_len}; {fix}")
    if data_cfg.objective not in OBJECTIVES or [meta["chunk_length"], meta["stride"]] != list(
            objectives.chunk_length(data_cfg, tokenizer)):
        raise ValueError(f"data.objective: {directory} was prepared for "
                         f"{meta['objective']!r}, this config has {data_cfg.objective!r}; {fix}")
    return meta


class PreparedChunks:
    """Chunk i of a prepared split: record i of its shards, as int32 ids."""

    def __init__(self, directory: str, split: str, meta: dict | None = None):
        import grain
        meta = meta or read_meta(directory)
        if split not in meta["splits"]:
            raise ValueError(f"data.dataset: {directory} has no {split!r} split; it has "
                             f"{sorted(meta['splits'])}")
        shards = [str(epath.Path(directory) / name) for name in meta["splits"][split]["shards"]]
        self._source = grain.sources.ArrayRecordDataSource(shards)
        self._rows = meta["splits"][split]["rows"]
        if len(self._source) != self._rows:
            raise ValueError(f"data.dataset: {directory}: the {split} shards hold "
                             f"{len(self._source)} rows, {META} says {self._rows}; prepare "
                             "it again")

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, index: int) -> np.ndarray:
        return np.frombuffer(self._source[index], np.int32).copy()


def token_stream(directory: str, split: str, max_tokens: int) -> np.ndarray:
    """The split's token stream (documents joined by EOS) rebuilt from its first rows."""
    meta = read_meta(directory)
    chunks = PreparedChunks(directory, split, meta)
    overlap = meta["chunk_length"] - meta["stride"]
    parts, total = [], 0
    for i in range(len(chunks)):
        row = chunks[i] if i == 0 else chunks[i][overlap:]
        parts.append(row)
        total += len(row)
        if total >= max_tokens:
            break
    return np.concatenate(parts)
