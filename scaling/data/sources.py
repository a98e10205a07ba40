"""Text sources: random-access sequences of documents from the builtin corpus, a TFDS name
or the user's files (files.py).

`open_split(data_cfg, split)` returns a `TextSource`: `len()` and `[i]` give one document as
`str` (or, for translation, a `(source, target)` pair of `str`). Everything downstream
(tokenizing, packing, objectives) works on these, whatever the dataset.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Iterator

BUILTIN = "builtin"
FILES = "files"  # data.files (scaling/data/files.py)
PREPARED = "prepared:"  # prepared:DIR, written by `scaling prepare-data` (prepared.py)


def resolve_data_dir(data_cfg) -> str:
    """`data.data_dir`, or TFDS's default data dir when empty."""
    if data_cfg.data_dir:
        return os.path.expanduser(data_cfg.data_dir)
    import tensorflow_datasets as tfds
    return os.path.expanduser(tfds.core.constants.DATA_DIR)


def _import_tfds_modules() -> None:
    """Registers TFDS's older, module-style builders (c4, wmt14_translate, ...).

    Without TensorFlow, `tensorflow_datasets` imports these families lazily, so they are
    missing from the registry until their module is imported.
    """
    for module in ("text", "translate", "summarization", "question_answering", "structured"):
        try:
            importlib.import_module(f"tensorflow_datasets.{module}")
        except Exception:  # a family that needs TensorFlow: its datasets stay unknown
            pass


def check_dataset_name(name: str, data_dir: str = "") -> None:
    """Raises a one-line ValueError naming `data.dataset` if TFDS does not know `name`."""
    if name in (BUILTIN, FILES) or name.startswith(PREPARED):
        return
    import tensorflow_datasets as tfds

    base = name.split("/")[0].split(":")[0]
    try:
        tfds.builder_cls(base)
        return
    except tfds.core.registered.DatasetNotFoundError:
        pass
    _import_tfds_modules()
    try:
        tfds.builder_cls(base)
        return
    except tfds.core.registered.DatasetNotFoundError:
        pass
    # A dataset prepared from files of its own (no registered builder) is fine too.
    if data_dir and os.path.isdir(os.path.join(os.path.expanduser(data_dir), base)):
        return
    raise ValueError(f"data.dataset: unknown dataset {name!r}; use 'builtin', 'files' (with "
                     "data.files) or a TFDS dataset name such as 'lm1b', 'tiny_shakespeare' "
                     "or 'wmt14_translate/de-en'")


def dataset_key(data_cfg) -> str:
    """A name for caches keyed by dataset: the corpus hash for builtin, else the TFDS name."""
    if data_cfg.dataset == BUILTIN:
        from scaling.data import builtin
        files = builtin.resolve_corpus(data_cfg.corpus, data_cfg.get("corpus_exclude", ""))
        return "builtin-" + builtin.corpus_key(files, data_cfg.eval_fraction)
    if data_cfg.dataset == FILES:
        from scaling.data import files as files_lib
        return files_lib.dataset_key(data_cfg)
    if data_cfg.dataset.startswith(PREPARED):  # the key of the dataset it was prepared from
        from scaling.data import prepared
        return prepared.read_meta(prepared.prepared_dir(data_cfg))["dataset_key"]
    return data_cfg.dataset.replace("/", "-")


class TextSource:
    """Decodes one feature (or a source/target pair) of a TFDS data source to `str`."""

    def __init__(self, records, text_key: str, target_key: str = ""):
        self._records = records
        self._text_key = text_key
        self._target_key = target_key

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int):
        record = self._records[index]
        if self._target_key:
            return _to_str(_field(record, self._text_key)), _to_str(_field(record, self._target_key))
        return _to_str(_field(record, self._text_key))


def _field(record, key):
    try:
        return record[key]
    except KeyError:
        raise KeyError(f"data.text_key/target_key: feature {key!r} not in the dataset; "
                       f"it has {sorted(record)}") from None


def _to_str(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=8)
def _builtin_sources(corpus: str, eval_fraction: float, data_dir: str, exclude: str = ""):
    from scaling.data import builtin
    return builtin.load_builtin(corpus, eval_fraction, data_dir or None, exclude)


def open_split(data_cfg, split: str) -> TextSource:
    """Returns the documents of `split` ('train' or 'validation') of `data.dataset`.

    The builtin corpus is prepared on first use. A named TFDS dataset must already be
    prepared in `data.data_dir` (or `data.download`); a 'validation' split falls back to
    'test' when the dataset has none (lm1b). 'files' reads `data.files` (files.py).
    """
    target_key = data_cfg.target_key if data_cfg.objective == "translation" else ""
    if data_cfg.dataset == BUILTIN:
        records = _builtin_sources(data_cfg.corpus, float(data_cfg.eval_fraction),
                                   data_cfg.data_dir, data_cfg.get("corpus_exclude", ""))[split]
        return TextSource(records, "text")
    if data_cfg.dataset == FILES:
        return _file_documents(_files_fields(data_cfg), split)
    if data_cfg.dataset.startswith(PREPARED):
        raise ValueError(f"data.dataset: {data_cfg.dataset!r} holds token ids, not text; "
                         "name the dataset it was prepared from to read documents")
    check_dataset_name(data_cfg.dataset, data_cfg.data_dir)

    try:
        records = _named_source(data_cfg, split)
    except (ValueError, KeyError) as e:
        if split != "validation" or "split" not in str(e).lower():
            raise
        records = _named_source(data_cfg, "test")
    return TextSource(records, data_cfg.text_key, target_key)


_FILES_FIELDS = ("files", "eval_files", "eval_fraction", "text_key", "files_text_per_line")


def _files_fields(data_cfg) -> tuple:
    return tuple((k, data_cfg.get(k, "")) for k in _FILES_FIELDS)


@functools.lru_cache(maxsize=8)
def _file_documents(fields: tuple, split: str):
    from scaling.data import files as files_lib
    return files_lib.FileDocuments(dict(fields), split)


def _named_source(data_cfg, split: str):
    """`tfds.data_source` of a prepared dataset; with `data.download`, prepares it first.

    Raises the one-line "not prepared" ValueError when it is not prepared and
    `data.download` is off.
    """
    import tensorflow_datasets as tfds

    check_dataset_name(data_cfg.dataset, data_cfg.data_dir)  # registers module-style builders
    try:
        return _tfds_data_source(data_cfg, split)
    except _NotPrepared as e:
        if not data_cfg.get("download", False):
            raise _not_prepared(data_cfg, e.__cause__ or e) from e
    # data.download: fetch and convert once (TFDS skips a dataset already prepared).
    builder = tfds.builder(data_cfg.dataset, data_dir=data_cfg.data_dir or None,
                           file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    try:
        return _tfds_data_source(data_cfg, split)
    except _NotPrepared as e:
        raise _not_prepared(data_cfg, e.__cause__ or e) from e


class _NotPrepared(Exception):
    """TFDS found no array_record files of the dataset in the data dir."""


def _tfds_data_source(data_cfg, split: str):
    import tensorflow_datasets as tfds
    try:
        return tfds.data_source(data_cfg.dataset, split=split, download=False,
                                data_dir=data_cfg.data_dir or None)
    except KeyError as e:
        if "not been generated" not in str(e):  # e.g. a split the dataset does not have
            raise
        raise _NotPrepared() from e
    except (NotImplementedError, AssertionError, FileNotFoundError) as e:
        raise _NotPrepared() from e


def _not_prepared(data_cfg, error: BaseException) -> ValueError:
    where = data_cfg.data_dir or "the TFDS default data dir"
    data_dir = data_cfg.data_dir or "DIR"
    return ValueError(
        f"data.dataset: {data_cfg.dataset!r} is not prepared as array_record in {where}; "
        f"run `tfds build {data_cfg.dataset} --file_format=array_record "
        f"--data_dir={data_dir}` (needs internet), or set data.download=True to prepare it "
        f"now, or use dataset='builtin' ({type(error).__name__})")


def check_prepared(data_cfg) -> None:
    """Raises the one-line "not prepared" ValueError before a run writes anything.

    Opens the train split's files (no data is read), so it costs about a second.
    """
    if data_cfg.dataset == BUILTIN:
        return
    if data_cfg.dataset == FILES:
        from scaling.data import files as files_lib
        files_lib.split_files(data_cfg, "train")  # the globs match files (nothing is read)
        files_lib.split_files(data_cfg, "validation")
        return
    absl_logger = logging.getLogger("absl")  # TFDS warns about the missing files first
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        _named_source(data_cfg, "train")
    finally:
        absl_logger.setLevel(level)


def iter_texts(data_cfg, split: str, limit: int | None = None) -> Iterator[str]:
    """Yields up to `limit` documents of `split` as text (both sides for translation;
    captioning datasets: scaling.data.captions.iter_captions)."""
    source = open_split(data_cfg, split)
    n = len(source) if limit is None else min(limit, len(source))
    for i in range(n):
        item = source[i]
        if isinstance(item, tuple):
            yield from item
        else:
            yield item
