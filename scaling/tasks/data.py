"""Labelled examples for fine-tuning: a task's (texts, label) items -> model-ready examples.

Encoders read `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (token types 0 for a, 1 for b),
as BERT was pretrained; decoders read `a [SEP] b [EOS]` and are classified at their last
real token. Both get `input_mask` (1 on real tokens), which tells the sequence head where
that last token is. Per task kind:

  sequence_classification  targets [] int32 class,    weights [] 1.0
  regression               targets [] float32 value,  weights [] 1.0
  token_classification     targets [T] int32 labels,  weights [T] 1.0 on text tokens

Pairs that do not fit are cut longest-first, as BERT's GLUE scripts do.
"""
from __future__ import annotations

import numpy as np

from scaling.tasks import registry

_PAD_INDEX = -1  # = scaling.data.pipeline._PAD_INDEX: a zero-weight example filling a batch


def _records(data_cfg, split: str):
    """A prepared TFDS split as random-access records (the 'not prepared' error otherwise)."""
    from scaling.data import sources
    return sources._named_source(data_cfg, split)  # noqa: SLF001  (shared TFDS reader)


class _GlueItems:
    """TFDS GLUE records -> (texts, label) items, decoded on access."""

    def __init__(self, records, info: registry.TaskInfo):
        self.records, self.info = records, info

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        record = self.records[i]
        texts = tuple(_text(record[k]) for k in self.info.text_keys)
        label = record[self.info.label_key]
        return texts, (float(label) if self.info.kind == registry.REGRESSION else int(label))


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class _Subset:
    def __init__(self, items, indices):
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.items[int(self.indices[i])]


def open_task(config, split: str):
    """The (texts, label) items of `split` ('train' or 'validation') of `data.dataset`.

    `task.max_train_examples` keeps the first N of a fixed permutation of train (the same
    subset for every seed, so runs differ only in what they are asked to vary).
    """
    info = registry.get(config.data.dataset)
    if info.name == "builtin_modules":
        from scaling.tasks import builtin_modules
        items = [((text,), label) for text, label in builtin_modules.examples(split)]
    elif info.name == "builtin_tokens":
        from scaling.tasks import builtin_tokens
        items = [((text,), labels) for text, labels in builtin_tokens.examples(split)]
    else:
        tfds_split = info.validation_split if split == "validation" else split
        items = _GlueItems(_records(config.data, tfds_split), info)
    limit = config.task.max_train_examples
    if split == "train" and 0 < limit < len(items):
        items = _Subset(items, subset_indices(len(items), limit))
    return items


def subset_indices(n: int, limit: int) -> np.ndarray:
    """The `limit` kept of `n` train items: the first of a fixed permutation, in file order."""
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def check_available(config) -> None:
    """Opens both splits: an unprepared TFDS task raises its one-line ValueError here."""
    for split in ("train", "validation"):
        if not len(open_task(config, split)):
            raise ValueError(f"data.dataset: the {split} split of {config.data.dataset!r} "
                             "is empty")


def fit_lengths(lengths: list[int], budget: int) -> list[int]:
    """Cut the longest segment by one token until the segments fit `budget` tokens."""
    lengths = list(lengths)
    while sum(lengths) > budget:
        longest = max(range(len(lengths)), key=lambda k: lengths[k])
        lengths[longest] -= 1
    return lengths


def encode(texts, label, tok, seq_len: int, family: str, kind: str) -> dict[str, np.ndarray]:
    """One example (see the module docstring); `label` is per byte for token tasks."""
    pieces = [np.asarray(tok.encode(t), np.int32) for t in texts]
    encoder = family == "encoder"
    budget = seq_len - len(pieces) - (1 if encoder else 0)  # CLS; a SEP/EOS per segment
    lengths = fit_lengths([len(p) for p in pieces], budget)
    ids, types, labelled = ([tok.cls_id], [0], [False]) if encoder else ([], [], [])
    for k, (piece, n) in enumerate(zip(pieces, lengths)):
        last = k == len(pieces) - 1
        end = tok.sep_id if encoder or not last else tok.eos_id
        ids += [*piece[:n], end]
        types += [min(k, 1)] * (n + 1)
        labelled += [True] * n + [False]
    n = len(ids)
    example = {"inputs": _pad(ids, seq_len), "input_mask": _pad([1] * n, seq_len)}
    if encoder:
        example["token_types"] = _pad(types, seq_len)
    if kind == registry.TOKEN:
        # Token labels of the first text (token tasks have one), placed at its positions.
        per_token = np.asarray(label, np.int32)[:lengths[0]]
        positions = np.flatnonzero(labelled)[:len(per_token)]
        targets = np.zeros((seq_len,), np.int32)
        targets[positions] = per_token
        weights = np.zeros((seq_len,), np.float32)
        weights[positions] = 1.0
        return {**example, "targets": targets, "weights": weights}
    dtype = np.float32 if kind == registry.REGRESSION else np.int32
    return {**example, "targets": np.asarray(label, dtype), "weights": np.float32(1.0)}


def _pad(values, length: int) -> np.ndarray:
    out = np.zeros((length,), np.int32)
    out[:len(values)] = values[:length]
    return out


class TaskExampleMaker:
    """(item index, epoch) -> example dict; a plain picklable object like ExampleMaker."""

    def __init__(self, items, tokenizer, seq_len: int, family: str, kind: str):
        self.items, self.tok = items, tokenizer
        self.seq_len, self.family, self.kind = seq_len, family, kind
        self._empty = None

    def __call__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        index, _ = item
        if index == _PAD_INDEX:
            if self._empty is None:
                self._empty = {k: np.zeros_like(v) for k, v in self((0, 0)).items()}
            return self._empty
        texts, label = self.items[index]
        return encode(texts, label, self.tok, self.seq_len, self.family, self.kind)


def label_baseline(config) -> float:
    """The validation loss of a constant predictor: the label entropy (classification, in
    nats) or the label variance (regression, squared error); what a model must beat."""
    items = open_task(config, "validation")
    labels = [items[i][1] for i in range(len(items))]
    kind = registry.get(config.data.dataset).kind
    if kind == registry.REGRESSION:
        return float(np.var(np.asarray(labels, np.float64)))
    flat = np.concatenate([np.ravel(np.asarray(x, np.int64)) for x in labels])
    p = np.bincount(flat) / len(flat)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())
