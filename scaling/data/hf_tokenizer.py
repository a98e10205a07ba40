"""Published tokenizers through the `tokenizers` package, from their standard files.

  hf:<dir or tokenizer.json>    any Hugging Face tokenizer.json (what `scaling import-hf` saves)
  gpt2_bpe:<dir>                GPT-2's byte-level BPE: <dir>/vocab.json + <dir>/merges.txt
  roberta_bpe:<dir>             RoBERTa's: the same files, with <s> </s> <pad> <unk> <mask>
  wordpiece:<vocab.txt or dir>  BERT's uncased WordPiece (lowercase, accents stripped)
  wordpiece_cased:<...>         BERT's cased WordPiece

Each is built the way the `transformers` fast tokenizers build it from the same files, so ids
agree with theirs (tests/test_tokenizers.py). Special ids come from the tokenizer's own tokens:
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
import os
import re
from typing import Iterable

import numpy as np

from scaling import storage
from scaling.data import token_bytes

KINDS = ("hf", "gpt2_bpe", "roberta_bpe", "wordpiece", "wordpiece_cased")
_ROLES = ("pad", "eos", "bos", "cls", "sep", "mask", "unk")
_SENTINEL = re.compile(r"^<extra_id_(\d+)>$")  # T5's sentinels


def split_kind(name: str) -> tuple[str, str] | None:
    """`'gpt2_bpe:/x'` -> `('gpt2_bpe', '/x')`; None unless `name` is one of KINDS."""
    kind, sep, path = name.partition(":")
    return (kind, os.path.expanduser(path)) if sep and kind in KINDS else None


def tokenizer_dir(name: str) -> str | None:
    """`hf:<dir>` -> `<dir>` (a tokenizer.json path -> its directory); None otherwise."""
    parsed = split_kind(name)
    if parsed is None or parsed[0] != "hf":
        return None
    path = parsed[1]
    return os.path.dirname(path) if path.endswith(".json") else path


# Where each kind's published files are on the Hugging Face Hub (for the error message).
HUB_FILES = {"gpt2_bpe": "openai-community/gpt2 vocab.json merges.txt",
             "roberta_bpe": "FacebookAI/roberta-base vocab.json merges.txt",
             "wordpiece": "google-bert/bert-base-uncased vocab.txt",
             "wordpiece_cased": "google-bert/bert-base-cased vocab.txt"}


def _need(path: str, what: str, name: str) -> str:
    if not os.path.isfile(path):
        kind = name.partition(":")[0]
        fetch = (f"`hf download {HUB_FILES[kind]} --local-dir {os.path.dirname(path)}`, "
                 if kind in HUB_FILES else "")
        raise ValueError(f"data.tokenizer: {name!r} needs {what}, but {path!r} does not exist; "
                         f"download it ({fetch}pip install -e \".[hf]\"), or set "
                         "SCALING_TOKENIZERS to the directory that holds the tokenizers")
    return path


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


def _digest(*paths: str) -> str:
    h = hashlib.sha1()
    for path in paths:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


class LibraryTokenizer:
    """A `tokenizers.Tokenizer` with the interface of `scaling.data.tokenizer.ByteTokenizer`.

    Args:
      tok: the tokenizer; `named`: role -> token text (pad, eos, bos, cls, sep, mask, unk);
      key: a short name that changes with the files' content; lengths: 'byte_level',
      'wordpiece' or 'decode', how `token_bytes` counts each token's bytes.
    """

    def __init__(self, tok, named: dict[str, str], key: str, lengths: str, name: str):
        self._tok, self._key, self.name = tok, key, name
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        ids = {role: i for role, text in named.items()
               if (i := tok.token_to_id(text)) is not None}
        self.eos_id = ids.get("eos", ids.get("sep"))
        self.pad_id = ids.get("pad", self.eos_id)
        if self.pad_id is None or self.eos_id is None:
            raise ValueError(f"data.tokenizer: {name!r} names neither a pad nor an eos/sep "
                             "token (tokenizer_config.json); one is needed for padding")
        self.bos_id = ids.get("cls", ids.get("bos", self.eos_id))
        self.cls_id = self.bos_id
        self.sep_id = ids.get("sep", self.eos_id)
        self.mask_id = ids.get("mask")

        added = tok.get_added_tokens_decoder()  # id -> AddedToken
        sentinels = sorted((int(m.group(1)), i) for i, t in added.items()
                           if (m := _SENTINEL.match(t.content)))
        self.sentinel_ids = [i for _, i in sentinels]
        special = {i for i, t in added.items() if t.special} | set(ids.values())
        self.special_ids = sorted(special | set(self.sentinel_ids))
        regular = np.ones(self.vocab_size, bool)
        regular[[i for i in self.special_ids if i < self.vocab_size]] = False
        # The ids an MLM may substitute as a "random token".
        self.regular_ids = np.flatnonzero(regular).astype(np.int32)
        self._lengths = lengths

    def encode(self, text: str) -> np.ndarray:
        """The int32 ids of `text`, without the special tokens a template would add."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, special tokens skipped."""
        return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)],
                                skip_special_tokens=True)

    @functools.cached_property
    def token_bytes(self) -> np.ndarray:
        """[vocab_size] bytes of text per id (scaling.data.token_bytes)."""
        vocab = self._tok.get_vocab(with_added_tokens=False)
        if self._lengths == "byte_level":
            return token_bytes.byte_level_bpe(vocab, self.vocab_size, self.special_ids)
        if self._lengths == "wordpiece":
            return token_bytes.wordpiece(vocab, self.vocab_size, self.special_ids)
        return token_bytes.decoded(lambda i: self._tok.decode([i]), self.vocab_size,
                                   self.special_ids)

    @property
    def key(self) -> str:
        """A short name for caches keyed by tokenizer (changes with the files' content)."""
        return self._key


def _lengths_of(tok) -> str:
    """How to count bytes for a tokenizer.json: by its decoder's type."""
    decoder = json.loads(tok.to_str()).get("decoder") or {}
    types = {d.get("type") for d in decoder.get("decoders", [decoder])}
    if "ByteLevel" in types:
        return "byte_level"
    return "wordpiece" if "WordPiece" in types else "decode"


class HFTokenizer(LibraryTokenizer):
    """`<dir>/tokenizer.json`, special tokens named by the directory's config files."""

    def __init__(self, directory: str):
        from tokenizers import Tokenizer  # imported only when such a tokenizer is asked for

        name = "hf:" + directory
        path = storage.join(directory, "tokenizer.json")
        if not storage.path(path).is_file():
            raise ValueError(f"data.tokenizer: no tokenizer.json in {directory!r}")
        self.directory = directory
        data = storage.path(path).read_bytes()  # a local file or a URL (an imported run's)
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # noqa: BLE001  (the Rust library's errors have no common type)
            raise ValueError(f"data.tokenizer: {path} is not a valid tokenizer.json "
                             f"({str(e).splitlines()[0][:120]})") from None
        key = "hf-" + hashlib.sha1(data).hexdigest()[:12]
        super().__init__(tok, _named_tokens(directory), key, _lengths_of(tok), name)


def _byte_level_bpe(kind: str, directory: str) -> LibraryTokenizer:
    """GPT-2 / RoBERTa: vocab.json + merges.txt, as transformers' GPT2/RobertaTokenizerFast."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    name = f"{kind}:{directory}"
    vocab = _need(os.path.join(directory, "vocab.json"), "vocab.json", name)
    merges = _need(os.path.join(directory, "merges.txt"), "merges.txt", name)
    tok = Tokenizer(models.BPE.from_file(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if kind == "gpt2_bpe":
        named = {"eos": "<|endoftext|>", "bos": "<|endoftext|>", "unk": "<|endoftext|>"}
        specials = [AddedToken("<|endoftext|>", special=True)]
    else:
        named = {"bos": "<s>", "cls": "<s>", "pad": "<pad>", "eos": "</s>", "sep": "</s>",
                 "unk": "<unk>", "mask": "<mask>"}
        specials = [AddedToken(t, special=True) for t in ("<s>", "<pad>", "</s>", "<unk>")]
        specials.append(AddedToken("<mask>", special=True, lstrip=True))
    tok.add_special_tokens([t for t in specials if tok.token_to_id(t.content) is not None])
    return LibraryTokenizer(tok, named, f"{kind}-{_digest(vocab, merges)}", "byte_level", name)


def _wordpiece(kind: str, path: str) -> LibraryTokenizer:
    """BERT: vocab.txt, as transformers' BertTokenizerFast (do_lower_case for uncased)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    name = f"{kind}:{path}"
    vocab = _need(os.path.join(path, "vocab.txt") if os.path.isdir(path) else path,
                  "vocab.txt", name)
    tok = Tokenizer(models.WordPiece.from_file(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None,
        lowercase=kind == "wordpiece")
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([AddedToken(t, special=True) for t in
                            ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                            if tok.token_to_id(t) is not None])
    named = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    return LibraryTokenizer(tok, named, f"{kind}-{_digest(vocab)}", "wordpiece", name)


@functools.lru_cache(maxsize=8)
def load(name: str) -> LibraryTokenizer:
    """The tokenizer `name` (one of KINDS + ':' + path), loaded once per process (the
    pipeline, the statistics and the model's vocabulary size all ask for it)."""
    kind, path = split_kind(name)
    if kind == "hf":
        return HFTokenizer(tokenizer_dir(name))
    if kind in ("gpt2_bpe", "roberta_bpe"):
        return _byte_level_bpe(kind, path)
    return _wordpiece(kind, path)
