"""Hugging Face tokenizers (`data.tokenizer=hf:<dir>`): `<dir>/tokenizer.json` through the
`tokenizers` package, so a model imported with `scaling import-hf` reads its own vocabulary.

Special ids come from the tokens named in tokenizer_config.json / special_tokens_map.json:
    pad   the pad token, else eos (GPT-2 has none and pads with <|endoftext|>)
    eos   the eos token, else sep (BERT separates documents with [SEP])
    bos   the cls token, else bos (cls_id is the same id: an MLM example starts with it)
    sep   the sep token, else eos
    mask  the mask token, or None (only the mlm objective needs one)
Unlike the byte and SentencePiece tokenizers, padding need not be id 0 (RoBERTa: 1, GPT-2:
50256); the objectives take every id from here.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Iterable

import numpy as np

from scaling import storage

PREFIX = "hf:"
_ROLES = ("pad", "eos", "bos", "cls", "sep", "mask", "unk")
_SENTINEL = re.compile(r"^<extra_id_(\d+)>$")  # T5's sentinels


def tokenizer_dir(name: str) -> str | None:
    """`hf:<dir>` -> `<dir>`; None for other tokenizer names."""
    return name[len(PREFIX):] if name.startswith(PREFIX) else None


def _named_tokens(directory: str) -> dict[str, str]:
    """role -> token text, from tokenizer_config.json then special_tokens_map.json."""
    named = {}
    for filename in ("special_tokens_map.json", "tokenizer_config.json"):  # later wins
        path = storage.join(directory, filename)
        if not storage.path(path).is_file():
            continue
        entries = json.loads(storage.read_text(path))
        for role in _ROLES:
            value = entries.get(f"{role}_token")
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                named[role] = value
    return named


class HFTokenizer:
    """A `tokenizer.json` with the interface of `scaling.data.tokenizer.ByteTokenizer`."""

    def __init__(self, directory: str):
        from tokenizers import Tokenizer  # imported only when an hf tokenizer is asked for

        path = storage.join(directory, "tokenizer.json")
        if not storage.path(path).is_file():
            raise ValueError(f"data.tokenizer: no tokenizer.json in {directory!r}")
        self.directory = directory
        data = storage.path(path).read_bytes()  # a local file or a URL (an imported run's)
        try:
            self._tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # noqa: BLE001  (the Rust library's errors have no common type)
            raise ValueError(f"data.tokenizer: {path} is not a valid tokenizer.json "
                             f"({str(e).splitlines()[0][:120]})") from None
        self._digest = hashlib.sha1(data).hexdigest()[:12]
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

        ids = {}
        for role, text in _named_tokens(directory).items():
            token_id = self._tok.token_to_id(text)
            if token_id is not None:
                ids[role] = token_id
        self.eos_id = ids.get("eos", ids.get("sep"))
        self.pad_id = ids.get("pad", self.eos_id)
        if self.pad_id is None or self.eos_id is None:
            raise ValueError(f"data.tokenizer: {directory!r} names neither a pad nor an eos/sep "
                             "token (tokenizer_config.json); one is needed for padding")
        self.bos_id = ids.get("cls", ids.get("bos", self.eos_id))
        self.cls_id = self.bos_id
        self.sep_id = ids.get("sep", self.eos_id)
        self.mask_id = ids.get("mask")

        added = self._tok.get_added_tokens_decoder()  # id -> AddedToken
        sentinels = sorted((int(m.group(1)), i) for i, t in added.items()
                           if (m := _SENTINEL.match(t.content)))
        self.sentinel_ids = [i for _, i in sentinels]
        special = {i for i, t in added.items() if t.special} | set(ids.values())
        self.special_ids = sorted(special | set(self.sentinel_ids))
        regular = np.ones(self.vocab_size, bool)
        regular[[i for i in self.special_ids if i < self.vocab_size]] = False
        # The ids an MLM may substitute as a "random token".
        self.regular_ids = np.flatnonzero(regular).astype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        """The int32 ids of `text`, without the special tokens a template would add."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, special tokens skipped."""
        return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)],
                                skip_special_tokens=True)

    @property
    def key(self) -> str:
        """A short name for caches keyed by tokenizer (changes with the file's content)."""
        return "hf-" + self._digest


@functools.lru_cache(maxsize=4)
def load(directory: str) -> HFTokenizer:
    """The tokenizer of `directory`, loaded once per process (the pipeline, the statistics
    and the model's vocabulary size all ask for it)."""
    return HFTokenizer(directory)
