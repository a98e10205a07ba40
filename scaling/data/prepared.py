"""Prepared datasets: a dataset tokenized and packed once, offline, into array_record shards.

`prepare(config, out_dir)` (the `scaling prepare-data` command) reads the documents of each
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
from typing import Iterator

import numpy as np
from etils import epath

PREFIX = "prepared:"
META = "meta.json"
SPLITS = ("train", "validation")
_ROWS_PER_SHARD_BYTES = 128 << 20   # about this many bytes of ids per shard file
_DOCS_PER_TASK = 1000               # documents per pool task (non-file sources)
_OBJECTIVES = ("causal_lm", "mlm", "span_corruption", "permutation_lm")


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
    from scaling.data import pipeline  # local: pipeline imports grain
    directory = prepared_dir(data_cfg)
    meta = read_meta(directory)
    fix = f"set it to match, or prepare {directory} again"
    if meta["tokenizer"] != tokenizer.key:
        raise ValueError(f"data.tokenizer: {directory} was prepared with tokenizer "
                         f"{meta['tokenizer']!r}, this config's is {tokenizer.key!r}; {fix}")
    if meta["seq_len"] != data_cfg.seq_len:
        raise ValueError(f"data.seq_len: {directory} was prepared for seq_len="
                         f"{meta['seq_len']}, this config has {data_cfg.seq_len}; {fix}")
    if data_cfg.objective not in _OBJECTIVES or [meta["chunk_length"], meta["stride"]] != list(
            pipeline.chunk_length(data_cfg, tokenizer)):
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


# ----------------------------------------------------------------------------- writing

class _ChunkCutter:
    """Cuts a stream fed piece by piece exactly as packing.PackedChunks cuts it whole."""

    def __init__(self, length: int, stride: int):
        self.length, self.stride = length, stride
        self.buffer = np.zeros((0,), np.int32)
        self.total = 0   # stream tokens seen
        self.emitted = 0

    def feed(self, ids: np.ndarray) -> Iterator[np.ndarray]:
        self.buffer = np.concatenate([self.buffer, ids.astype(np.int32)])
        self.total += len(ids)
        start = 0
        while len(self.buffer) - start >= self.length:
            yield self.buffer[start:start + self.length]
            start += self.stride
            self.emitted += 1
        self.buffer = self.buffer[start:]

    def finish(self) -> Iterator[np.ndarray]:
        overlap = self.length - self.stride
        num_chunks = max(1, -(-(self.total - overlap) // self.stride))
        while self.emitted < num_chunks:
            yield self.buffer[:self.length]
            self.buffer = self.buffer[self.stride:]
            self.emitted += 1


class _ShardWriter:
    """Writes records into DIR/<split>-00000.array_record, ... of `rows_per_shard` each."""

    def __init__(self, directory: str, split: str, rows_per_shard: int):
        self.directory, self.split, self.rows_per_shard = directory, split, rows_per_shard
        self.shards: list[str] = []
        self.rows = 0
        self._writer = None

    def write(self, row: np.ndarray) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter
        if self.rows % self.rows_per_shard == 0:
            self._close()
            name = f"{self.split}-{len(self.shards):05d}.array_record"
            self.shards.append(name)
            self._writer = ArrayRecordWriter(str(epath.Path(self.directory) / name),
                                             "group_size:1")
        self._writer.write(np.ascontiguousarray(row, np.int32).tobytes())
        self.rows += 1

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> list[str]:
        self._close()
        return self.shards


def _tasks(data_cfg, split: str) -> list[tuple]:
    """Pool tasks whose results, in order, are the split's documents in pipeline order."""
    from scaling.data import files, sources
    if data_cfg.dataset == sources.FILES:
        paths, keep = files.split_files(data_cfg, split)
        return [("file", split, path, keep) for path in paths]
    n = len(sources.open_split(data_cfg, split))
    return [("range", split, a, min(a + _DOCS_PER_TASK, n)) for a in range(0, n, _DOCS_PER_TASK)]


_WORKER: dict = {}


def _init_worker(data_cfg_dict: dict) -> None:
    import ml_collections

    from scaling.data.tokenizer import make_tokenizer
    cfg = ml_collections.ConfigDict(data_cfg_dict)
    _WORKER.update(cfg=cfg, tokenizer=make_tokenizer(cfg), sources={})


def _run_task(task: tuple) -> tuple[np.ndarray, int]:
    """(ids of the task's documents, each followed by EOS; number of documents)."""
    from scaling.data import files, packing, sources
    kind, split, a, b = task
    cfg, tok = _WORKER["cfg"], _WORKER["tokenizer"]
    if kind == "file":
        docs = files.read_split_documents(a, cfg, b)
    else:
        if split not in _WORKER["sources"]:
            _WORKER["sources"][split] = sources.open_split(cfg, split)
        source = _WORKER["sources"][split]
        docs = [source[i] for i in range(a, b)]
    return packing.pack_documents(docs, tok), len(docs)


def prepare(config, out_dir: str, *, processes: int = 1, splits=SPLITS,
            rows_per_shard: int = 0, progress: bool = True) -> dict:
    """Tokenizes and packs `config.data`'s splits into `out_dir`; returns the meta dict.

    Args:
      config: the run config (reads `config.data`; its dataset must not be prepared:).
      out_dir: the directory to write (created; existing shards of a split are replaced).
      processes: tokenizing worker processes (1: in this process).
      splits: the splits to write.
      rows_per_shard: records per shard file (0: about 128 MiB of ids per shard).
      progress: show a tqdm bar per split.
    """
    import multiprocessing

    from tqdm import tqdm

    from scaling.data import pipeline, sources
    from scaling.data.checks import validate_data_config
    from scaling.data.tokenizer import make_tokenizer

    data_cfg = config.data
    if is_prepared(data_cfg):
        raise ValueError("data.dataset: already prepared; name the dataset to prepare "
                         "(builtin, files or a TFDS name)")
    if data_cfg.objective not in _OBJECTIVES:
        raise ValueError(f"data.objective: prepare-data packs text for "
                         f"{', '.join(_OBJECTIVES)}, not {data_cfg.objective!r}")
    validate_data_config(config)
    tokenizer = make_tokenizer(data_cfg)  # trains a SentencePiece model once, here
    length, stride = pipeline.chunk_length(data_cfg, tokenizer)
    rows_per_shard = rows_per_shard or max(1, _ROWS_PER_SHARD_BYTES // (4 * length))
    epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
    # A stale meta.json must not describe shards this run is about to overwrite.
    (epath.Path(out_dir) / META).unlink(missing_ok=True)
    meta = dict(format=1, dataset=data_cfg.dataset, dataset_key=sources.dataset_key(data_cfg),
                tokenizer=tokenizer.key, vocab_size=int(tokenizer.vocab_size),
                seq_len=int(data_cfg.seq_len), objective=data_cfg.objective,
                chunk_length=int(length), stride=int(stride), splits={})

    cfg_dict = data_cfg.to_dict()
    pool = None
    if processes > 1:  # spawn: the parent may hold threads (grain, TFDS) that fork would copy
        pool = multiprocessing.get_context("spawn").Pool(
            processes, initializer=_init_worker, initargs=(cfg_dict,))
    else:
        _init_worker(cfg_dict)
    try:
        for split in splits:
            tasks = _tasks(data_cfg, split)
            results = pool.imap(_run_task, tasks) if pool else map(_run_task, tasks)
            cutter = _ChunkCutter(length, stride)
            writer = _ShardWriter(out_dir, split, rows_per_shard)
            documents = 0
            bar = tqdm(results, total=len(tasks), disable=not progress, unit="task",
                       desc=f"prepare {split}")
            for ids, num_docs in bar:
                documents += num_docs
                for row in cutter.feed(ids):
                    writer.write(row)
                bar.set_postfix(rows=writer.rows, refresh=False)
            for row in cutter.finish():
                writer.write(row)
            meta["splits"][split] = dict(rows=writer.rows, tokens=int(cutter.total),
                                         documents=documents, shards=writer.close())
    finally:
        if pool is not None:  # every result is consumed by now, or an error stops the rest
            pool.terminate()
            pool.join()
    (epath.Path(out_dir) / META).write_text(json.dumps(meta, indent=1))
    return meta
