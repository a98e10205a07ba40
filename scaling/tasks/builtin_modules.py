"""`builtin_modules`: which standard-library package does a code snippet come from?

An offline classification task for any fresh machine: snippets of a few consecutive lines
(about 120 bytes) from eight stdlib packages, labelled by package. The split is by FILE:
every third file of each package's sorted file list is validation, every other file is
train, so no file is in both, and each package's subpackages and class share are alike in
both splits (a split by name prefix held out whole subpackages, e.g. all of xml/dom).
Pretraining configs pass `heldout_globs()` as `data.corpus_exclude`, so a pretrained model
has never seen the validation text.
"""
from __future__ import annotations

import functools
import os
import sysconfig

import numpy as np

PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing",
            "unittest", "xml")
HELD_OUT_EVERY = 3           # files 1, 4, 7, ... of each package (sorted) are validation
SNIPPET_BYTES = 120          # lines are joined until a snippet has at least this many bytes
MIN_CODE_BYTES = 40          # snippets with fewer non-blank bytes (blank runs) are skipped
MAX_VALIDATION_PER_FILE = 48  # evenly spaced: long files do not swamp the validation split
_SKIP_DIRS = {"test", "tests", "__pycache__"}


def held_out_files(files: list[str]) -> list[str]:
    """Of a package's sorted files, the validation ones: every HELD_OUT_EVERY-th, from the
    second."""
    return files[1::HELD_OUT_EVERY]


def heldout_globs() -> str:
    """The validation files as `data.corpus_exclude` globs (comma-separated), one per file,
    relative to the standard library so that a config stays valid on another machine."""
    root = os.path.abspath(sysconfig.get_paths()["stdlib"])
    return ",".join("*/" + os.path.relpath(path, root).replace(os.sep, "/")
                    for package in PACKAGES for path in held_out_files(package_files(package)))


def package_files(package: str) -> list[str]:
    """The package's non-empty `.py` files (tests left out, as in the builtin corpus), sorted."""
    root = os.path.join(sysconfig.get_paths()["stdlib"], package)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(os.path.abspath(f) for f in files if os.path.getsize(f) > 0)


def snippet_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of consecutive lines with SNIPPET_BYTES bytes or more;
    blank runs dropped."""
    out, start, end = [], 0, 0
    for line in text.splitlines(keepends=True):
        end += len(line)
        piece = text[start:end]
        if len(piece.encode("utf-8")) >= SNIPPET_BYTES:
            if len("".join(piece.split())) >= MIN_CODE_BYTES:
                out.append((start, end))
            start = end
    return out


def snippets(text: str) -> list[str]:
    return [text[a:b] for a, b in snippet_spans(text)]


def split_files(split: str) -> list[tuple[str, int]]:
    """(path, package index) of every file in 'train' or 'validation'."""
    if split not in ("train", "validation"):
        raise ValueError(f"builtin task: no split {split!r}; it has 'train', 'validation'")
    out = []
    for label, package in enumerate(PACKAGES):
        files = package_files(package)
        held_out = set(held_out_files(files))
        out.extend((path, label) for path in files
                   if (path in held_out) == (split == "validation"))
    return out


def read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def thin(items: list, split: str) -> list:
    """Validation keeps MAX_VALIDATION_PER_FILE evenly spaced items of a file."""
    if split != "validation" or len(items) <= MAX_VALIDATION_PER_FILE:
        return items
    keep = np.linspace(0, len(items) - 1, MAX_VALIDATION_PER_FILE).round()
    return [items[int(i)] for i in keep]


@functools.lru_cache(maxsize=2)
def examples(split: str) -> tuple[tuple[str, int], ...]:
    """(snippet, package index) pairs of 'train' or 'validation', in file order."""
    out = []
    for path, label in split_files(split):
        out.extend((piece, label) for piece in thin(snippets(read(path)), split))
    if not out:
        raise ValueError(f"data.dataset: builtin_modules found no {split} files in this "
                         "Python's standard library")
    return tuple(out)
