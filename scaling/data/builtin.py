"""The built-in offline corpus: local text files prepared once into a TFDS array_record dataset.

By default the corpus is the running interpreter's standard library (`.py` files, tests and
GUI packages left out: about 10 MB in ~570 files), so a newcomer trains without downloading
anything. `data.corpus` may name a directory or a glob of the user's own text files instead.

Each file is one document. The prepared dataset is keyed by the corpus: the builder config
name is a hash of the resolved file list (paths, sizes, mtimes) and the held-out fraction, so
two corpora never collide and an edited corpus is prepared afresh. It is read back through
`builder.as_data_source()`, random access over array_record without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import os
import sysconfig
import warnings

import numpy as np
import tensorflow_datasets as tfds

# Stdlib packages left out of the default corpus: tests (a third of the bytes, and
# repetitive), GUI code and the 2to3 fixers. Keeps preparation to a few seconds.
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "tkinter",
                     "turtledemo", "lib2to3", "__pycache__", "ensurepip"}


def stdlib_files() -> list[str]:
    """Returns the sorted `.py` files of this interpreter's standard library (default corpus)."""
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place so os.walk never descends into site-packages (it can be huge).
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS)
        files.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(files)


def resolve_corpus(corpus: str, exclude: str = "") -> list[str]:
    """Returns the sorted list of text files `data.corpus` names, less `data.corpus_exclude`.

    Args:
      corpus: "" for the stdlib default, a directory (all files below it, recursively,
        skipping hidden ones) or a glob pattern (`**` allowed).
      exclude: comma-separated fnmatch globs matched against each absolute path (`*`
        crosses `/`), e.g. a fine-tuning task's held-out files, so pretraining never sees
        them. Excluded files change the file list and therefore `corpus_key`.

    Raises:
      ValueError: when nothing matches.
    """
    if not corpus:
        files = stdlib_files()
    elif os.path.isdir(corpus):
        files = []
        for dirpath, dirnames, filenames in os.walk(corpus):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.join(dirpath, f) for f in filenames if not f.startswith("."))
    else:
        files = [f for f in glob.glob(os.path.expanduser(corpus), recursive=True)
                 if os.path.isfile(f)]
    files = sorted(os.path.abspath(f) for f in files if os.path.getsize(f) > 0)
    patterns = [p.strip() for p in exclude.split(",") if p.strip()]
    files = [f for f in files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    if not files:
        left = f" after data.corpus_exclude={exclude!r}" if patterns else ""
        raise ValueError(f"data.corpus: no text files match {corpus!r}{left}; "
                         "point it at a directory or glob of text files")
    return files


def corpus_key(files: list[str], eval_fraction: float) -> str:
    """A short hash of the file list (path, size, mtime) and the held-out fraction."""
    h = hashlib.sha256(f"eval_fraction={eval_fraction!r}\n".encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def split_documents(num_files: int, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministically holds out documents: returns (train_ids, validation_ids), sorted.

    At least one document is held out; a one-file corpus serves that file to both splits
    (there is nothing else to hold out).
    """
    if num_files == 1:
        return np.array([0]), np.array([0])
    num_eval = min(num_files - 1, max(1, int(round(eval_fraction * num_files))))
    order = np.random.default_rng(0).permutation(num_files)  # fixed seed: a property of the corpus
    return np.sort(order[num_eval:]), np.sort(order[:num_eval])


@dataclasses.dataclass
class CorpusConfig(tfds.core.BuilderConfig):
    """One prepared corpus; `name` is `corpus_key` of its files."""
    files: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # long: keep out of logs
    eval_fraction: float = 0.02


class ScalingBuiltinCorpus(tfds.core.GeneratorBasedBuilder):
    """Local text files, one document each, split into train/validation by document."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    # No code directory with checksums/metadata: TFDS's lookup of it needs the
    # `importlib_resources` backport for a builder defined inside a package.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly (not dataset_info_from_configs): no metadata dir to look up.
        return tfds.core.DatasetInfo(
            builder=self,
            description="Local text files, one document per file.",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(),
                                                 "path": tfds.features.Text()}),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        files = self.builder_config.files
        train, validation = split_documents(len(files), self.builder_config.eval_fraction)
        return {"train": self._generate_examples([files[i] for i in train]),
                "validation": self._generate_examples([files[i] for i in validation])}

    def _generate_examples(self, files):
        binary, not_utf8 = [], []
        for path in files:
            with open(path, "rb") as f:
                raw = f.read()
            if b"\0" in raw[:8192]:  # an image, archive, compiled file: not text at all
                binary.append(path)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # Latin-1 and the like: keep it, say so below
                not_utf8.append(path)
                text = raw.decode("utf-8", errors="replace")
            yield path, {"text": text, "path": path}
        if binary:
            warnings.warn(f"data.corpus: left out {len(binary)} binary file(s), e.g. "
                          f"{binary[0]}")
        if not_utf8:
            warnings.warn(f"data.corpus: {len(not_utf8)} file(s) are not UTF-8, e.g. "
                          f"{not_utf8[0]}; their undecodable bytes became U+FFFD")


def make_builder(corpus: str, eval_fraction: float, data_dir: str | None,
                 exclude: str = "") -> ScalingBuiltinCorpus:
    """Returns the (not yet prepared) builder for `corpus`, keyed by its file list."""
    files = resolve_corpus(corpus, exclude)
    config = CorpusConfig(name="c" + corpus_key(files, eval_fraction), files=tuple(files),
                          eval_fraction=eval_fraction,
                          description=f"{len(files)} files from {corpus or 'the Python stdlib'}")
    return ScalingBuiltinCorpus(config=config, data_dir=data_dir or None,
                                file_format="array_record")


def load_builtin(corpus: str, eval_fraction: float, data_dir: str | None, exclude: str = ""):
    """Prepares the corpus once (TFDS shows a progress bar) and returns its data sources.

    Returns:
      {'train': source, 'validation': source}, each a random-access sequence of
      {'text': bytes, 'path': bytes} dicts.
    """
    builder = make_builder(corpus, eval_fraction, data_dir, exclude)
    builder.download_and_prepare()  # no-op when this corpus was prepared before
    return builder.as_data_source()
