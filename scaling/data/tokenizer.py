"""Tokenizers: a download-free byte tokenizer and an optional corpus-trained SentencePiece
(and, in hf_tokenizer.py, a Hugging Face tokenizer.json).

All share one interface so the objectives never care which is in use:

  .vocab_size, .encode(str) -> int32 array, .decode(ids) -> str (specials skipped),
  .pad_id, .eos_id, .bos_id (also [CLS]), .sep_id, .mask_id, .sentinel_ids, .special_ids

The special ids are the same in the byte and SentencePiece tokenizers (PAD=0, EOS=1,
BOS/CLS=2, SEP=3, MASK=4) so batches from either look alike; a Hugging Face tokenizer keeps
its own (RoBERTa pads with 1), so code takes them from the tokenizer, never as constants.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Iterable, Sequence

import numpy as np

PAD_ID, EOS_ID, BOS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
NUM_RESERVED = 5                    # ids below this are the specials above
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
      A `ByteTokenizer`, `SentencePieceTokenizer` or (`hf:<dir>`) `HFTokenizer`.
    """
    kind = data_cfg.tokenizer
    if kind == "byte":
        return ByteTokenizer()
    if kind.startswith("hf:"):
        from scaling.data import hf_tokenizer  # local import: needs the tokenizers package
        return hf_tokenizer.load(hf_tokenizer.tokenizer_dir(kind))
    if kind != "sentencepiece":
        raise ValueError(f"data.tokenizer: unknown tokenizer {kind!r}; use 'byte', "
                         "'sentencepiece' or 'hf:<dir>'")
    from scaling.data import sources  # local import: sources imports TFDS (slow)

    key = sources.dataset_key(data_cfg)
    digest = hashlib.sha1(f"{key}:{data_cfg.sp_vocab_size}".encode()).hexdigest()[:12]
    prefix = os.path.join(sources.resolve_data_dir(data_cfg), "scaling_tokenizers", f"sp_{digest}")
    if not os.path.exists(prefix + ".model"):
        if texts is None:
            texts = sources.iter_texts(data_cfg, "train")
        logging.info("Training SentencePiece (%d pieces) into %s", data_cfg.sp_vocab_size, prefix)
        # Train under a private name, then rename: a concurrent reader never sees half a file.
        tmp_prefix = f"{prefix}.tmp{os.getpid()}"
        train_sentencepiece(texts, tmp_prefix, data_cfg.sp_vocab_size)
        os.replace(tmp_prefix + ".vocab", prefix + ".vocab")
        os.replace(tmp_prefix + ".model", prefix + ".model")
    return SentencePieceTokenizer(prefix + ".model")
