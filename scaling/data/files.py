"""data.dataset='files': documents read from the user's files, local or at any epath URL.

`data.files` is a comma-separated list of globs (`~/corpus/*.jsonl`, `gs://bucket/c4/*.parquet`;
a local directory means every file below it, a remote one the files in it). The format follows the file name:

  *.jsonl, *.json (optionally .gz)   one JSON object per line; the text is field data.text_key
  *.parquet                          column data.text_key
  *.array_record*                    each record one UTF-8 document
  anything else                      plain text: the whole file is one document, or each
                                     non-empty line when data.files_text_per_line

Empty documents are skipped. The validation split is `data.eval_files` when given; otherwise
a document is held out when the hash of its text falls below data.eval_fraction: the split is
deterministic, independent of file order and location, and copies of a document always land
on the same side. Paths go through etils.epath, so remote storage works wherever epath's
backends (gfile, fsspec) reach.
"""
from __future__ import annotations

import bisect
import glob
import gzip
import hashlib
import io
import json
import os
import threading
from collections import OrderedDict

import numpy as np
from etils import epath

_GLOB_CHARS = "*?["


def expand(patterns: str, field: str = "data.files") -> list[str]:
    """The files named by comma-separated globs, each pattern's matches sorted, no repeats.

    Raises:
      ValueError naming `field` when a pattern matches no file.
    """
    found: list[str] = []
    seen: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        matches = sorted(str(p) for p in _glob(pattern))
        if not matches:
            raise ValueError(f"{field}: no files match {pattern!r}; give comma-separated globs "
                             "of jsonl, parquet, array_record or text files")
        found.extend(m for m in matches if not (m in seen or seen.add(m)))
    if not found:
        raise ValueError(f"{field}: empty; give comma-separated globs of jsonl, parquet, "
                         "array_record or text files")
    return found


def _glob(pattern: str) -> list:
    if "://" not in pattern:  # local: the standard glob, `**` included
        pattern = os.path.expanduser(pattern)
        if os.path.isdir(pattern):  # every file below it, hidden ones left out
            found = []
            for d, dirnames, names in os.walk(pattern):
                dirnames[:] = [n for n in dirnames if not n.startswith(".")]
                found.extend(os.path.join(d, f) for f in names if not f.startswith("."))
            return found
        return [f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
    parts = pattern.split("/")
    first = next((i for i, p in enumerate(parts) if any(c in p for c in _GLOB_CHARS)), None)
    if first is None:  # no wildcard: one file, or the files directly in a directory
        path = epath.Path(pattern)
        if path.is_dir():
            return [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return [path] if path.exists() else []
    try:
        return [p for p in epath.Path("/".join(parts[:first])).glob("/".join(parts[first:]))
                if not p.is_dir()]
    except NotImplementedError as e:  # gfile refuses `**` on remote storage
        raise ValueError(f"data.files: {pattern!r}: {e}".splitlines()[0]) from None


def file_format(path: str) -> str:
    """'jsonl', 'parquet', 'array_record' or 'text', from the file name."""
    name = os.path.basename(path).lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if ".array_record" in name:
        return "array_record"
    return "text"


def read_documents(path: str, text_key: str = "text", text_per_line: bool = False) -> list[str]:
    """All non-empty documents of one file, in file order."""
    fmt = file_format(path)
    if fmt == "array_record":
        import grain
        source = grain.sources.ArrayRecordDataSource([path])
        docs = [_decode(source[i]) for i in range(len(source))]
    elif fmt == "parquet":
        import pyarrow.parquet as pq
        with epath.Path(path).open("rb") as f:
            parquet = pq.ParquetFile(f)
            columns = [text_key] if text_key in parquet.schema_arrow.names else None
            table = parquet.read(columns=columns)  # all columns only for the error message
        docs = [v for v in _parquet_texts(table, text_key, path) if v is not None]
    else:
        raw = epath.Path(path).read_bytes()
        if path.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        if fmt == "jsonl":
            docs = [_json_text(line, text_key, path, n)
                    for n, line in enumerate(io.BytesIO(raw), 1) if line.strip()]
        else:
            text = _decode(raw)
            docs = text.splitlines() if text_per_line else [text]
    return [d for d in docs if d.strip()]


def _parquet_texts(table, text_key: str, path: str) -> list[str | None]:
    """Column `text_key` of a pyarrow table as str (None where null)."""
    if text_key not in table.column_names:
        raise ValueError(f"data.text_key: column {text_key!r} not in {path}; it has "
                         f"{table.column_names}")
    return [None if v is None else _decode(v) for v in table.column(text_key).to_pylist()]


def _decode(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _json_text(line: bytes, text_key: str, path: str, number: int) -> str:
    record = json.loads(line)
    try:
        value = record[text_key]
        return "" if value is None else _decode(value)  # null: no document
    except (KeyError, TypeError):
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"data.text_key: field {text_key!r} not in line {number} of {path}; "
                         f"it has {keys}") from None


def held_out(text: str, eval_fraction: float) -> bool:
    """Whether a document belongs to the validation split: its text's hash < eval_fraction."""
    digest = hashlib.blake2b(text.encode("utf-8", errors="replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0 ** 64 < eval_fraction


def split_files(data_cfg, split: str) -> tuple[list[str], bool | None]:
    """The files of `split` and `keep_held_out`: None = every document of those files,
    True/False = only the documents `held_out` says are (not) validation."""
    if data_cfg.get("eval_files", ""):
        if split == "train":
            return expand(data_cfg["files"]), None
        return expand(data_cfg["eval_files"], "data.eval_files"), None
    return expand(data_cfg["files"]), split != "train"


def read_split_documents(path: str, fields, keep_held_out: bool | None) -> list[str]:
    """One file's documents of a split.

    Args:
      path: the file.
      fields: the data config, or a dict of its text_key, files_text_per_line, eval_fraction.
      keep_held_out: see `split_files`.
    """
    docs = read_documents(path, fields["text_key"], bool(fields["files_text_per_line"]))
    if keep_held_out is None:
        return docs
    return [d for d in docs if held_out(d, fields["eval_fraction"]) == keep_held_out]


class FileDocuments:
    """The documents of one split of `data.files`: files in order, each file's in order.

    Opening reads every file once to index its documents of the split. `[i]` then reads
    parquet by row group and array_record by record (random access, as a large split's
    one-document-per-example order needs), and reads a jsonl or text file whole, keeping
    the two most recent in memory: cheap in file order (packing), costly in random order over
    big files, where `scaling prepare-data` is the way. Picklable, for grain's workers.
    """

    _CACHED_BLOCKS = 2

    def __init__(self, data_cfg, split: str):
        self._fields = {k: data_cfg.get(k, "") for k in
                        ("text_key", "files_text_per_line", "eval_fraction")}
        self._files, self._keep = split_files(data_cfg, split)
        self.__setstate__(self.__dict__)
        # Random-access formats: the kept rows of each file and (parquet) row-group starts.
        self._rows: dict[int, np.ndarray] = {}
        self._group_starts: dict[int, np.ndarray] = {}
        counts = []
        for f, path in enumerate(self._files):
            if file_format(path) in ("parquet", "array_record"):
                self._rows[f] = self._index_rows(f)
                counts.append(len(self._rows[f]))
            else:
                counts.append(len(self._block(("file", f))))
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_lock", "_cache", "_readers")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._cache = OrderedDict()
        self._readers = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self):
            raise IndexError(index)
        f = bisect.bisect_right(self._starts, index) - 1
        k = index - int(self._starts[f])
        if f not in self._rows:
            return self._block(("file", f))[k]
        row = int(self._rows[f][k])
        if file_format(self._files[f]) == "array_record":
            return _decode(self._reader(f)[row])
        group = bisect.bisect_right(self._group_starts[f], row) - 1
        return self._block(("group", f, group))[row - int(self._group_starts[f][group])]

    def _index_rows(self, f: int) -> np.ndarray:
        """The rows of file f that hold a non-empty document of this split."""
        path = self._files[f]
        if file_format(path) == "array_record":
            source = self._reader(f)
            values = [_decode(source[i]) for i in range(len(source))]
        else:
            import pyarrow.parquet as pq
            with epath.Path(path).open("rb") as handle:
                parquet = pq.ParquetFile(handle)
                sizes = [parquet.metadata.row_group(g).num_rows
                         for g in range(parquet.num_row_groups)]
                table = parquet.read(columns=[self._fields["text_key"]]) if (
                    self._fields["text_key"] in parquet.schema_arrow.names) else parquet.read()
            self._group_starts[f] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            values = _parquet_texts(table, self._fields["text_key"], path)
        keep = self._keep
        return np.array([i for i, v in enumerate(values) if v is not None and v.strip() and (
            keep is None or held_out(v, self._fields["eval_fraction"]) == keep)], np.int64)

    def _reader(self, f: int):
        """The array_record reader of file f (opened once)."""
        if f not in self._readers:
            import grain
            self._readers[f] = grain.sources.ArrayRecordDataSource([self._files[f]])
        return self._readers[f]

    def _block(self, key: tuple) -> list:
        """A whole file's documents ('file', f) or a parquet row group's texts ('group', f, g)."""
        with self._lock:  # grain's reader threads share this object
            if key not in self._cache:
                if key[0] == "file":
                    block = read_split_documents(self._files[key[1]], self._fields, self._keep)
                else:
                    import pyarrow.parquet as pq
                    path, text_key = self._files[key[1]], self._fields["text_key"]
                    with epath.Path(path).open("rb") as handle:
                        table = pq.ParquetFile(handle).read_row_group(key[2], columns=[text_key])
                    block = _parquet_texts(table, text_key, path)
                self._cache[key] = block
                if len(self._cache) > self._CACHED_BLOCKS:
                    self._cache.popitem(last=False)
            return self._cache[key]


def dataset_key(data_cfg) -> str:
    """A short hash of what decides the documents: files (with sizes where known) and split."""
    h = hashlib.sha256()
    for field in ("files", "eval_files", "eval_fraction", "text_key", "files_text_per_line"):
        h.update(f"{field}={data_cfg.get(field, '')!r}\n".encode())
    for path in expand(data_cfg["files"]) + (expand(data_cfg["eval_files"], "data.eval_files")
                                          if data_cfg.get("eval_files", "") else []):
        try:
            size = epath.Path(path).stat().length
        except Exception:  # noqa: BLE001  (a backend without stat: the name alone)
            size = -1
        h.update(f"{path}\0{size}\n".encode())
    return "files-" + h.hexdigest()[:16]
