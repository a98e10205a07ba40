"""Tokenizers, named by `data.tokenizer`:

  byte                          UTF-8 bytes, no files (the default)
  sentencepiece                 a SentencePiece model trained on the corpus, cached
  sentencepiece_model:<.model>  a published SentencePiece model (T5, XLNet, ALBERT, ...)
  words                         lowercase words of the train captions (words.py), cached
  hf:, gpt2_bpe:, roberta_bpe:, wordpiece:, wordpiece_cased:   (hf_tokenizer.py)

All share one interface so the objectives never care which is in use:

  .vocab_size, .encode(str) -> int32 array, .decode(ids) -> str (specials skipped),
  .pad_id, .eos_id, .bos_id (also [CLS]), .sep_id, .mask_id, .sentinel_ids, .special_ids,
  .token_bytes ([vocab_size] bytes of text per id, for bits per byte), .key

The special ids are the same in the byte and SentencePiece tokenizers (PAD=0, EOS=1,
BOS/CLS=2, SEP=3, MASK=4) so batches from either look alike; a Hugging Face tokenizer keeps
its own (RoBERTa pads with 1), so code takes them from the tokenizer, never as constants.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Iterable, Sequence

import numpy as np

from scaling.data import token_bytes as token_bytes_lib

from scaling.data.special_ids import (BOS_ID, EOS_ID, MASK_ID, NUM_RESERVED,  # noqa: F401
                                      PAD_ID, SEP_ID)
BYTE_OFFSET = NUM_RESERVED          # byte b is id b + 5
NUM_BYTES = 256
BYTE_VOCAB_SIZE = 384               # 5 specials + 256 bytes + 123 sentinels: a multiple of 128
SP_NUM_SENTINELS = 100              # sentinels appended after the SentencePiece pieces (T5)


class ByteTokenizer:
    """UTF-8 bytes as tokens: no training, no download, vocabulary of 384.

    Ids: 0..4 specials, 5..260 the bytes 0..255, 261..383 span-corruption sentinels.
    """

    pad_id, eos_id, bos_id, sep_id, mask_id = PAD_ID, EOS_ID, BOS_ID, SEP_ID, MASK_ID
    cls_id = BOS_ID

    def __init__(self):
        self.vocab_size = BYTE_VOCAB_SIZE
        self.sentinel_ids = list(range(BYTE_OFFSET + NUM_BYTES, BYTE_VOCAB_SIZE))
        self.special_ids = list(range(NUM_RESERVED)) + self.sentinel_ids
        # The ids an MLM may substitute as a "random token": the real bytes only.
        self.regular_ids = np.arange(BYTE_OFFSET, BYTE_OFFSET + NUM_BYTES, dtype=np.int32)

    def encode(self, text: str) -> np.ndarray:
        """Returns the int32 ids of `text`'s UTF-8 bytes (no BOS/EOS added)."""
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return raw.astype(np.int32) + BYTE_OFFSET

    def decode(self, ids: Iterable[int]) -> str:
        """Returns the text of `ids`, skipping specials and sentinels."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = ids[(ids >= BYTE_OFFSET) & (ids < BYTE_OFFSET + NUM_BYTES)]
        return (ids - BYTE_OFFSET).astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    @property
    def key(self) -> str:
        """A short name for caches keyed by tokenizer."""
        return "byte"

    @property
    def token_bytes(self) -> np.ndarray:
        """[vocab_size]: 1 for each byte id, 0 for specials and sentinels."""
        table = np.zeros(self.vocab_size, np.int32)
        table[BYTE_OFFSET:BYTE_OFFSET + NUM_BYTES] = 1
        return table


class SentencePieceTokenizer:
    """A SentencePiece unigram model trained on the corpus, with our fixed special ids.

    The model holds `vocab_size - 100` pieces (PAD/EOS/BOS/SEP/MASK at 0..4, byte fallback
    so nothing is ever unknown); the last 100 ids are T5-style sentinels past the model's
    own pieces, so `vocab_size` equals `data.sp_vocab_size`.
    """

    pad_id, eos_id, bos_id, sep_id, mask_id = PAD_ID, EOS_ID, BOS_ID, SEP_ID, MASK_ID
    cls_id = BOS_ID

    def __init__(self, model_path: str):
        import sentencepiece as spm  # optional dependency, imported only when asked for

        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        n = self._sp.get_piece_size()
        if [self._sp.piece_to_id(p) for p in ("<sep>", "<mask>")] != [SEP_ID, MASK_ID]:
            raise ValueError(f"{model_path}: SEP/MASK are not at ids {SEP_ID}/{MASK_ID}")
        self._num_pieces = n
        self.vocab_size = n + SP_NUM_SENTINELS
        self.sentinel_ids = list(range(n, n + SP_NUM_SENTINELS))
        unk = self._sp.unk_id()
        self.special_ids = sorted({*range(NUM_RESERVED), unk, *self.sentinel_ids})
        specials = set(self.special_ids)
        self.regular_ids = np.array([i for i in range(n) if i not in specials], np.int32)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._sp.decode([i for i in ids if NUM_RESERVED <= i < self._num_pieces])

    @property
    def key(self) -> str:
        return "sp-" + os.path.basename(self.model_path)

    @property
    def token_bytes(self) -> np.ndarray:
        pieces = [self._sp.id_to_piece(i) for i in range(self._num_pieces)]
        return token_bytes_lib.sentencepiece(pieces, self.vocab_size, self.special_ids)


class PretrainedSentencePiece:
    """A published SentencePiece `.model` (`data.tokenizer=sentencepiece_model:<path>`) with
    its own ids: pad, eos, bos and unk as the model defines them, `<cls>`/`<sep>`/`<mask>`
    where it has such pieces (XLNet). A model without `<extra_id_N>` pieces (T5's) gets 100
    sentinels appended after its pieces, as T5 does, so span corruption works with it.
    """

    def __init__(self, model_path: str):
        import sentencepiece as spm

        if not os.path.isfile(model_path):
            raise ValueError(f"data.tokenizer: no SentencePiece model at {model_path!r} "
                             "(download it, or set SCALING_TOKENIZERS to where it is)")
        self.model_path = model_path
        self._sp = sp = spm.SentencePieceProcessor(model_file=model_path)
        n = self._num_pieces = sp.get_piece_size()
        piece = {sp.id_to_piece(i): i for i in range(n)}
        own = lambda i: i if i >= 0 else None  # noqa: E731  (SentencePiece says -1 for none)
        self.eos_id = own(sp.eos_id()) if own(sp.eos_id()) is not None else piece.get("<sep>")
        self.pad_id = own(sp.pad_id()) if own(sp.pad_id()) is not None else self.eos_id
        if self.eos_id is None or self.pad_id is None:
            raise ValueError(f"data.tokenizer: {model_path!r} defines neither an eos nor a pad "
                             "piece; one is needed for padding")
        self.bos_id = piece.get("<cls>", own(sp.bos_id()))
        self.bos_id = self.eos_id if self.bos_id is None else self.bos_id
        self.cls_id = self.bos_id
        self.sep_id = piece.get("<sep>", self.eos_id)
        self.mask_id = piece.get("<mask>")
        sentinels = sorted((int(p[len("<extra_id_"):-1]), i) for p, i in piece.items()
                           if p.startswith("<extra_id_") and p.endswith(">"))
        self.sentinel_ids = [i for _, i in sentinels] or list(range(n, n + SP_NUM_SENTINELS))
        self.vocab_size = max(n, max(self.sentinel_ids) + 1)
        specials = {i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)}
        specials |= {i for i in (self.pad_id, self.eos_id, self.bos_id, self.sep_id,
                                 self.mask_id) if i is not None}
        self.special_ids = sorted(specials | set(self.sentinel_ids))
        regular = np.ones(self.vocab_size, bool)
        regular[self.special_ids] = False
        self.regular_ids = np.flatnonzero(regular).astype(np.int32)
        with open(model_path, "rb") as f:
            self._digest = hashlib.sha1(f.read()).hexdigest()[:12]

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._sp.decode([i for i in ids
                                if i < self._num_pieces and i not in self.special_ids])

    @property
    def key(self) -> str:
        return "spm-" + self._digest

    @property
    def token_bytes(self) -> np.ndarray:
        pieces = [self._sp.id_to_piece(i) for i in range(self._num_pieces)]
        return token_bytes_lib.sentencepiece(pieces, self.vocab_size, self.special_ids)


SP_MODEL_PREFIX = "sentencepiece_model:"


@functools.lru_cache(maxsize=4)
def _pretrained_sentencepiece(path: str) -> PretrainedSentencePiece:
    return PretrainedSentencePiece(path)


def train_sentencepiece(texts: Sequence[str], model_prefix: str, vocab_size: int) -> str:
    """Trains a SentencePiece model on `texts`; returns the `.model` path.

    Pieces get `vocab_size - 100` ids; the caller appends the 100 sentinels.
    """
    import sentencepiece as spm

    num_pieces = vocab_size - SP_NUM_SENTINELS
    if num_pieces < NUM_BYTES + NUM_RESERVED + 2:
        raise ValueError(
            f"data.sp_vocab_size: {vocab_size} is too small; need at least "
            f"{NUM_BYTES + NUM_RESERVED + 2 + SP_NUM_SENTINELS} (256 byte-fallback pieces, "
            f"specials and {SP_NUM_SENTINELS} sentinels)")
    os.makedirs(os.path.dirname(model_prefix) or ".", exist_ok=True)
    # Long source lines are split by SentencePiece into sentences anyway; feed lines.
    def lines():
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    yield line
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines(), model_prefix=model_prefix, vocab_size=num_pieces,
        model_type="unigram", byte_fallback=True,
        character_coverage=0.9995,  # rare characters are spelled in bytes instead
        # pad/eos/bos at our fixed ids; SEP and MASK fill the next free ids, 3 and 4.
        pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID, unk_id=NUM_RESERVED,
        control_symbols=["<sep>", "<mask>"],
        input_sentence_size=200_000, shuffle_input_sentence=True,
        max_sentence_length=1 << 14, num_threads=os.cpu_count() or 1,
        hard_vocab_limit=False,  # a tiny corpus may not support every requested piece
        minloglevel=2)
    return model_prefix + ".model"


def make_tokenizer(data_cfg, *, texts: Sequence[str] | None = None):
    """Returns the tokenizer named by `data_cfg.tokenizer`.

    Args:
      data_cfg: the `config.data` section.
      texts: sentencepiece only: training texts; by default the train split's documents.
        The model is saved under the TFDS data dir keyed by dataset and vocab size, and
        reused by later runs (and by every host: train it once before a multi-host run).

    Returns:
      A `ByteTokenizer`, `SentencePieceTokenizer`, `PretrainedSentencePiece` or
      `hf_tokenizer.LibraryTokenizer`.
    """
    from scaling.data import hf_tokenizer  # the tokenizers package is imported only on use

    kind = data_cfg.tokenizer
    if kind == "byte":
        return ByteTokenizer()
    if kind == "words":
        from scaling.data import words  # noqa: PLC0415
        return words.make_word_tokenizer(data_cfg)
    if hf_tokenizer.split_kind(kind) is not None:
        return hf_tokenizer.load(kind)
    if kind.startswith(SP_MODEL_PREFIX):
        return _pretrained_sentencepiece(os.path.expanduser(kind[len(SP_MODEL_PREFIX):]))
    if kind != "sentencepiece":
        raise ValueError(f"data.tokenizer: unknown tokenizer {kind!r}; use byte, "
                         f"words, sentencepiece, {SP_MODEL_PREFIX}<file.model>, or "
                         f"{', '.join(k + ':<path>' for k in hf_tokenizer.KINDS)}")
    from scaling.data import sources  # local import: sources imports TFDS (slow)

    key = sources.dataset_key(data_cfg)
    digest = hashlib.sha1(f"{key}:{data_cfg.sp_vocab_size}".encode()).hexdigest()[:12]
    prefix = os.path.join(sources.resolve_data_dir(data_cfg), "scaling_tokenizers", f"sp_{digest}")
    if not os.path.exists(prefix + ".model"):
        if texts is None:
            from scaling.data import captions  # noqa: PLC0415
            texts = captions.train_texts(data_cfg)
        logging.info("Training SentencePiece (%d pieces) into %s", data_cfg.sp_vocab_size, prefix)
        # Train under a private name, then rename: a concurrent reader never sees half a file.
        tmp_prefix = f"{prefix}.tmp{os.getpid()}"
        train_sentencepiece(texts, tmp_prefix, data_cfg.sp_vocab_size)
        os.replace(tmp_prefix + ".vocab", prefix + ".vocab")
        os.replace(tmp_prefix + ".model", prefix + ".model")
    return SentencePieceTokenizer(prefix + ".model")
