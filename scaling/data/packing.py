"""Chunk sources: random-access sequences of token chunks that examples are built from.

Two ways to turn documents into fixed-length chunks:

* `PackedChunks` (default): all documents of a split tokenized once, joined with EOS into
  one stream and cut into consecutive chunks. No padding is wasted except in the last chunk.
  The stream lives in memory (uint16: ~2 bytes per token), so this suits corpora up to a few
  hundred million tokens: the builtin corpus, tiny_shakespeare, a few lm1b shards.
* `DocumentChunks`: one chunk per document, tokenized on access and cut to length. Used for
  datasets with more than `data.pack_max_documents` documents (c4), which could not be
  tokenized up front; short documents are padded instead of packed.

`PairChunks` serves translation: (source ids, target ids) per example.
"""
from __future__ import annotations

import numpy as np


def pack_documents(docs, tokenizer, limit: int | None = None) -> np.ndarray:
    """Tokenizes documents and joins them, each followed by EOS, into one 1-D stream.

    Args:
      docs: a sequence of `str`.
      tokenizer: anything with `encode` and `eos_id`.
      limit: at most this many documents (None: all).

    Returns:
      uint16 ids when the vocabulary fits (halves memory), else int32.
    """
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    n = len(docs) if limit is None else min(limit, len(docs))
    eos = np.array([tokenizer.eos_id], dtype)
    parts = []
    for i in range(n):
        parts.append(tokenizer.encode(docs[i]).astype(dtype))
        parts.append(eos)
    return np.concatenate(parts) if parts else np.zeros((0,), dtype)


class PackedChunks:
    """Chunk i is stream[i*stride : i*stride + length] (the last one may be shorter).

    Causal LM uses length = T + 1 and stride = T, so consecutive windows overlap by one token
    and every token of the stream is a target exactly once.
    """

    def __init__(self, stream: np.ndarray, length: int, stride: int | None = None):
        self.stream = stream
        self.length = length
        self.stride = stride or length
        overlap = self.length - self.stride
        # Enough chunks that every token past the first `overlap` is covered once.
        self._len = max(1, -(-(len(stream) - overlap) // self.stride))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> np.ndarray:
        start = index * self.stride
        return self.stream[start:start + self.length].astype(np.int32)


class DocumentChunks:
    """Chunk i is document i's ids plus EOS, cut to `length` (tokenized on access)."""

    def __init__(self, docs, tokenizer, length: int):
        self.docs = docs
        self.tokenizer = tokenizer
        self.length = length

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: int) -> np.ndarray:
        ids = self.tokenizer.encode(self.docs[index])[:self.length - 1]
        return np.append(ids, self.tokenizer.eos_id).astype(np.int32)


class PairChunks:
    """Example i is (source ids, target ids) of translation pair i."""

    def __init__(self, pairs, tokenizer):
        self.pairs = pairs
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        source, target = self.pairs[index]
        return self.tokenizer.encode(source), self.tokenizer.encode(target)
