"""`prepare(config, out_dir)`, the `scaling prepare-data` command: tokenize and pack a dataset
once, offline, into the array_record shards and meta.json that prepared.py reads back.

The documents of each split of `config.data` (builtin, files or a TFDS name) are tokenized
in a process pool and cut exactly as the pipeline would cut them on the fly (see prepared.py
for the layout).
"""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np
from etils import epath

from scaling.data import objectives
from scaling.data.prepared import OBJECTIVES, META, SPLITS, is_prepared

_ROWS_PER_SHARD_BYTES = 128 << 20   # about this many bytes of ids per shard file
_DOCS_PER_TASK = 1000               # documents per pool task (non-file sources)


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

    from scaling.data import sources
    from scaling.data.checks import validate_data_config
    from scaling.data.tokenizer import make_tokenizer

    data_cfg = config.data
    if is_prepared(data_cfg):
        raise ValueError("data.dataset: already prepared; name the dataset to prepare "
                         "(builtin, files or a TFDS name)")
    if data_cfg.objective not in OBJECTIVES:
        raise ValueError(f"data.objective: prepare-data packs text for "
                         f"{', '.join(OBJECTIVES)}, not {data_cfg.objective!r}")
    validate_data_config(config)
    tokenizer = make_tokenizer(data_cfg)  # trains a SentencePiece model once, here
    length, stride = objectives.chunk_length(data_cfg, tokenizer)
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
