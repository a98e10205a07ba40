"""Run directories on local disks and in buckets: one path abstraction for every write.

A workdir is a local path or a URL (`gs://bucket/dir`; `s3://bucket/dir` for what can go
there, see `workdir`). Everything the library writes into it goes through `etils.epath`
(fsspec: gcsfs, s3fs) or orbax (tensorstore), never through `open()` on a string that may be
a URL, which would make a local `./gs:/...` directory.

Buckets differ from disks in two ways this module hides:
  * objects cannot be appended to: `LineAppender` keeps the file's text and rewrites the
    object at most every `upload_every_s` seconds and on flush / close (a killed run loses
    at most that much of metrics.jsonl; the loop flushes before each checkpoint, so nothing
    up to the resumed step is lost);
  * there is no atomic rename, but an object upload is itself atomic: `write_text_atomic`
    renames a temporary file on disks and writes the object directly on buckets.

TensorBoard event files go through `tensorboard_writer`, which gives tensorboardX a writer
that stores through epath for URLs (tensorboardX's own gs:// / s3:// writers use other
clients and credentials).

Reading and writing gs:// needs gcsfs, s3:// needs s3fs (`pip install 'scaling[cloud]'`).
"""
from __future__ import annotations

import io
import os
import re
import time

from etils import epath

# Schemes a workdir may have, with the fsspec package epath needs for each.
SCHEMES = {"gs": "gcsfs", "s3": "s3fs"}
# The schemes orbax-checkpoint can write arrays to: it hands tensorstore a cloud key-value
# store only for gs:// (any other URL would become a local file path).
CHECKPOINT_SCHEMES = ("gs",)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(ValueError):
    """A workdir that cannot be used (a one-line message, exit code 2)."""


def scheme(path) -> str | None:
    """'gs' for 'gs://b/x', None for a local path."""
    match = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return match.group(1).lower() if match else None


def is_url(path) -> bool:
    return scheme(path) is not None


def path(p) -> epath.Path:
    """`p` as an epath.Path: URLs as they are, local paths made absolute."""
    if isinstance(p, epath.Path) and is_url(str(p)):
        return p
    text = os.fspath(p)
    return epath.Path(text if is_url(text) else os.path.abspath(text))


def join(base, *parts: str) -> str:
    """`base/part/...` as a string, for URLs and local paths alike (no abspath)."""
    text = os.fspath(base)
    if is_url(text):
        return "/".join([text.rstrip("/"), *parts])
    return os.path.join(text, *parts)


def workdir(path_str: str, *, checkpoints: bool = False, field: str = "--workdir"
            ) -> epath.Path:
    """Check a workdir string and return it as an epath.Path.

    Args:
      path_str: a local path, gs://bucket/dir or s3://bucket/dir.
      checkpoints: the run will write orbax checkpoints there (training).
      field: the flag or config field named in errors.

    Raises:
      StorageError: one line naming `field`: an unknown scheme, a missing fsspec package,
        or a scheme orbax cannot write checkpoints to.
    """
    kind = scheme(path_str)
    if kind is None:
        return path(path_str)
    if kind not in SCHEMES:
        raise StorageError(f"{field}: unknown scheme '{kind}://' in {path_str!r}; use a local "
                           "path, gs://bucket/dir or s3://bucket/dir")
    if checkpoints and kind not in CHECKPOINT_SCHEMES:
        raise StorageError(f"{field}: {kind}:// cannot hold training checkpoints "
                           "(orbax-checkpoint writes arrays to a cloud store only for gs://); "
                           "use gs://bucket/dir, or a local or mounted directory")
    if not re.match(r"^[A-Za-z]+://[^/]+", path_str):
        raise StorageError(f"{field}: {path_str!r} names no bucket; use {kind}://bucket/dir")
    try:
        __import__(SCHEMES[kind])
    except ImportError:
        raise StorageError(f"{field}: {kind}:// needs the {SCHEMES[kind]} package (pip install "
                           "'scaling[cloud]')") from None
    return path(path_str)


def exists(p) -> bool:
    return path(p).exists()


def read_text(p) -> str:
    return path(p).read_text(encoding="utf-8")


def write_text_atomic(p, text: str) -> None:
    """Write `p` so that readers see the old or the new text, never a part.

    Local: write a temporary file next to it, then rename (atomic on POSIX). Buckets: one
    object upload, which is atomic (and rename is a copy there).
    """
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_url(str(target)):
        target.write_text(text, encoding="utf-8")
        return
    tmp = target.parent / f".{target.name}.tmp.{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def copy_tree(local_dir, dest) -> None:
    """Copy the files under a local directory to `dest` (a bucket URL or a local path)."""
    src = epath.Path(local_dir)
    for f in src.rglob("*"):
        if f.is_file():
            target = path(dest) / f.relative_to(src).as_posix()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())


def trim_partial_line(p) -> None:
    """Cut an incomplete last line (a run killed mid-write) so appends stay valid JSONL."""
    target = path(p)
    if not target.exists():
        return
    data = target.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    kept = data[:data.rfind(b"\n") + 1]
    if is_url(str(target)):
        target.write_bytes(kept)
    else:
        with open(target, "rb+") as f:  # a local path (checked above)
            f.truncate(len(kept))


class LineAppender:
    """Append text lines to a file; on buckets, rewrite the object now and then.

    Local files are opened in append mode and flushed after every line, so a killed run
    leaves complete lines only (but possibly a cut last one). On a bucket the whole text is
    kept in memory (it starts with the object's current text) and uploaded when
    `upload_every_s` seconds have passed since the last upload, and on `flush` / `close`.

    Args:
      p: the file (a local path or URL); its directory is created.
      upload_every_s: buckets only: the least time between two uploads.
      clock: a `time.monotonic`-like function (tests pass a fake one).
    """

    def __init__(self, p, upload_every_s: float = 10.0, clock=time.monotonic):
        self.path = path(p)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._bucket = is_url(str(self.path))
        self._every, self._clock = float(upload_every_s), clock
        if self._bucket:
            self._text = io.StringIO()
            if self.path.exists():
                self._text.write(self.path.read_text(encoding="utf-8"))
            self._dirty, self._uploaded = False, clock()
        else:
            self._file = open(self.path, "a", encoding="utf-8")  # a local path (checked)

    def write(self, line: str) -> None:
        """Append `line` (which should end in a newline) as one write."""
        if not self._bucket:
            self._file.write(line)
            self._file.flush()
            return
        self._text.write(line)
        self._dirty = True
        if self._clock() - self._uploaded >= self._every:
            self.flush()

    def flush(self) -> None:
        """Make every line written so far visible in the file (uploads on buckets)."""
        if not self._bucket:
            self._file.flush()
        elif self._dirty:
            self.path.write_text(self._text.getvalue(), encoding="utf-8")
            self._dirty, self._uploaded = False, self._clock()

    def close(self) -> None:
        self.flush()
        if not self._bucket:
            self._file.close()


class _ObjectRecordWriter:
    """tensorboardX's record sink for a URL: the event file in memory, uploaded on flush."""

    def __init__(self, url: str):
        self.path = path(url)
        self._data = io.BytesIO()
        self._dirty = False

    def write(self, data: bytes) -> None:
        self._data.write(data)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self.path.write_bytes(self._data.getvalue())
            self._dirty = False

    def close(self) -> None:
        self.flush()


class _ObjectRecordWriterFactory:
    def open(self, url: str) -> _ObjectRecordWriter:
        return _ObjectRecordWriter(url)

    def directory_check(self, url: str) -> None:
        path(url).mkdir(parents=True, exist_ok=True)


def tensorboard_writer(logdir, flush_secs: int = 30):
    """A tensorboardX SummaryWriter for `logdir`; URLs are written through epath.

    tensorboardX picks a record writer by the logdir's scheme; for URLs this registers
    one that keeps the event file in memory and uploads it whole on each flush (every
    `flush_secs` and on close).
    """
    from tensorboardX import SummaryWriter, record_writer  # noqa: PLC0415
    text = os.fspath(logdir)
    kind = scheme(text)
    if kind is not None:
        record_writer.register_writer_factory(kind, _ObjectRecordWriterFactory())
    return SummaryWriter(logdir=text, flush_secs=flush_secs)
