"""How many bytes of text each token id stands for: the denominator of bits per byte.

A loss in nats per token depends on the tokenizer (a byte tokenizer's tokens are short, a
50k BPE's long), so runs with different tokenizers compare only per byte of text:

    bits/byte = sum(loss over predicted tokens) / ln 2 / sum(bytes of those tokens)

Every function here returns an int32 array [vocab_size]: the UTF-8 length of each token's
text as it appears in the source, 0 for special tokens, padding and sentinels.
  byte-level BPE (GPT-2, RoBERTa)  exact: each symbol is one byte (GPT-2's byte->unicode map)
  SentencePiece                    exact: '▁' is one space byte, '<0xNN>' pieces one byte
  WordPiece (BERT)                 approximate: the normaliser drops spaces, case and accents,
                                   so a word-initial piece counts one byte for the space
                                   before it, a '##' continuation its own bytes only
"""
from __future__ import annotations

import functools
import re

import numpy as np

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece byte-fallback pieces


@functools.lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable-character map, inverted (char -> byte).

    Printable Latin-1 bytes map to themselves; the other 68 bytes to chr(256 + k) in order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _table(vocab: dict[str, int], vocab_size: int, special_ids, length) -> np.ndarray:
    table = np.zeros(vocab_size, np.int32)
    for token, i in vocab.items():
        if i < vocab_size:
            table[i] = length(token)
    table[[i for i in special_ids if i < vocab_size]] = 0
    return table


def byte_level_bpe(vocab: dict[str, int], vocab_size: int, special_ids) -> np.ndarray:
    """Byte-level BPE: one byte per symbol of the token's string (symbols outside the map,
    i.e. added tokens, count their own UTF-8 bytes)."""
    to_byte = _unicode_to_byte()
    return _table(vocab, vocab_size, special_ids,
                  lambda t: sum(1 if c in to_byte else len(c.encode()) for c in t))


def sentencepiece(pieces: list[str], vocab_size: int, special_ids) -> np.ndarray:
    """SentencePiece pieces: '▁' (U+2581) is the space it replaced; '<0xNN>' is one byte."""
    vocab = {p: i for i, p in enumerate(pieces)}
    return _table(vocab, vocab_size, special_ids,
                  lambda p: 1 if _BYTE_PIECE.match(p) else len(p.replace("▁", " ").encode()))


def wordpiece(vocab: dict[str, int], vocab_size: int, special_ids,
              prefix: str = "##") -> np.ndarray:
    """WordPiece: a continuation piece counts its bytes; a word-initial piece also the space
    before it, unless it is punctuation (which the pre-tokenizer splits off unspaced)."""
    def length(token: str) -> int:
        if token.startswith(prefix) and len(token) > len(prefix):
            return len(token[len(prefix):].encode())
        return len(token.encode()) + (1 if token[:1].isalnum() else 0)
    return _table(vocab, vocab_size, special_ids, length)


def decoded(decode_one, vocab_size: int, special_ids) -> np.ndarray:
    """Any other tokenizer: the UTF-8 length of each id decoded alone."""
    return _table({str(i): i for i in range(vocab_size)}, vocab_size, special_ids,
                  lambda s: len(decode_one(int(s)).encode()))
