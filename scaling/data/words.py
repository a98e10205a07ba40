"""The word-level tokenizer (`data.tokenizer = "words"`), for captions.

Text is lowercased and split into words and single punctuation marks; the vocabulary is the
fixed specials (PAD=0 EOS=1 BOS=2 SEP=3 MASK=4, UNK=5) then the train split's caption words
seen at least data.words_min_count times, sorted. The built-in shapes set's words come from
its grammar (scaling.data.shapes: every word any caption can use, all of which occur in
train), so no data is read; another dataset's are counted over its train captions once and
cached in the data dir, keyed by dataset, caption key and minimum count.

token_bytes counts a word's UTF-8 bytes plus one for the space before it, so losses convert
to bits per byte of caption text like the other tokenizers'.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
from typing import Iterable

import numpy as np

from scaling.data.special_ids import BOS_ID, EOS_ID, MASK_ID, NUM_RESERVED, PAD_ID, SEP_ID

UNK_ID = NUM_RESERVED          # a word outside the vocabulary
FIRST_WORD_ID = UNK_ID + 1
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def split_words(text: str) -> list[str]:
    """'A red Circle, left.' -> ['a', 'red', 'circle', ',', 'left', '.']."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: Iterable[str], min_count: int = 1) -> list[str]:
    """The sorted words of `texts` seen at least `min_count` times."""
    counts = collections.Counter(w for text in texts for w in split_words(text))
    return sorted(w for w, c in counts.items() if c >= min_count)


class WordTokenizer:
    """Words as tokens, with the byte tokenizer's special ids (the interface of
    scaling.data.tokenizer)."""

    pad_id, eos_id, bos_id, sep_id, mask_id = PAD_ID, EOS_ID, BOS_ID, SEP_ID, MASK_ID
    cls_id = BOS_ID
    unk_id = UNK_ID

    def __init__(self, words: list[str], key: str = "words"):
        self.words = list(words)
        self._ids = {w: FIRST_WORD_ID + i for i, w in enumerate(self.words)}
        self.vocab_size = FIRST_WORD_ID + len(self.words)
        self.sentinel_ids: list[int] = []
        self.special_ids = list(range(FIRST_WORD_ID))
        self.regular_ids = np.arange(FIRST_WORD_ID, self.vocab_size, dtype=np.int32)
        self._key = key

    def encode(self, text: str) -> np.ndarray:
        """int32 ids of the words of `text` (UNK for unknown words; no BOS/EOS)."""
        return np.asarray([self._ids.get(w, UNK_ID) for w in split_words(text)], np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """The words of `ids` joined by spaces (specials skipped, UNK as '<unk>')."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).reshape(-1):
            if i == UNK_ID:
                out.append("<unk>")
            elif FIRST_WORD_ID <= i < self.vocab_size:
                out.append(self.words[i - FIRST_WORD_ID])
        return " ".join(out)

    @property
    def key(self) -> str:
        return self._key

    @property
    def token_bytes(self) -> np.ndarray:
        """[vocab_size]: a word's bytes + 1 for its space; UNK 1; specials 0."""
        table = np.zeros(self.vocab_size, np.int32)
        table[UNK_ID] = 1
        table[FIRST_WORD_ID:] = [len(w.encode()) + 1 for w in self.words]
        return table


def shapes_words() -> list[str]:
    """Every word the shapes grammar can use (scaling.data.shapes.captions), sorted."""
    from scaling.data import shapes  # noqa: PLC0415
    words = {"a", "and", "left", "right", "of", "above", "below"}
    words |= set(shapes.SIZES) | set(shapes.COLOURS) | set(shapes.SHAPES)
    return sorted(words)


def make_word_tokenizer(data_cfg) -> WordTokenizer:
    """The words tokenizer of `data_cfg.dataset` (built once and cached; see module doc)."""
    from scaling.data import captions  # noqa: PLC0415
    min_count = int(data_cfg.get("words_min_count", 1))
    if data_cfg.dataset == captions.SHAPES:
        return WordTokenizer(shapes_words(), key="words-shapes")
    from scaling.data import sources  # noqa: PLC0415  (imports TFDS)
    name = f"{sources.dataset_key(data_cfg)}:{data_cfg.get('caption_key', '')}:{min_count}"
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    path = os.path.join(sources.resolve_data_dir(data_cfg), "scaling_tokenizers",
                        f"words_{digest}.json")
    if not os.path.exists(path):
        texts = captions.train_texts(data_cfg)
        words = build_vocabulary(texts, min_count)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"  # a concurrent reader never sees half a file
        with open(tmp, "w") as f:
            json.dump({"dataset": name, "words": words}, f)
        os.replace(tmp, path)
    with open(path) as f:
        return WordTokenizer(json.load(f)["words"], key=f"words-{digest}")
