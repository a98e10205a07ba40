"""`builtin_tokens`: label every byte of a code snippet by its Python token type.

An offline token-classification task: the snippets and the by-file split of
`builtin_modules`, each byte labelled by what Python's `tokenize` makes of the whole file.
"""
from __future__ import annotations

import functools
import io
import token as token_lib
import tokenize

import numpy as np

from scaling.tasks import builtin_modules

LABELS = ("other", "name", "op", "number", "string", "comment")  # other: whitespace, newlines
_LABEL_OF = {token_lib.NAME: 1, token_lib.OP: 2, token_lib.NUMBER: 3, token_lib.STRING: 4,
             token_lib.COMMENT: 5}
# Python 3.12 splits f-strings into parts; they are all string bytes.
for _name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END"):
    if hasattr(token_lib, _name):
        _LABEL_OF[getattr(token_lib, _name)] = 4


def char_labels(text: str) -> np.ndarray | None:
    """[len(text)] int labels of each character, or None when `text` does not tokenize."""
    starts = np.cumsum([0] + [len(line) for line in text.splitlines(keepends=True)])
    labels = np.zeros((len(text),), np.int32)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            label = _LABEL_OF.get(tok.type)
            if label and tok.start[0] <= len(starts) - 1:
                a = starts[tok.start[0] - 1] + tok.start[1]
                b = starts[tok.end[0] - 1] + tok.end[1]
                labels[a:b] = label
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return labels


def byte_labels(text: str, labels: np.ndarray) -> np.ndarray:
    """Character labels -> one label per UTF-8 byte (the byte tokenizer's tokens)."""
    widths = [len(ch.encode("utf-8")) for ch in text]
    return np.repeat(labels, widths).astype(np.int32)


@functools.lru_cache(maxsize=2)
def examples(split: str) -> tuple[tuple[str, np.ndarray], ...]:
    """(snippet, [bytes] labels) pairs of 'train' or 'validation'."""
    out = []
    for path, _ in builtin_modules.split_files(split):
        text = builtin_modules.read(path)
        labels = char_labels(text)
        if labels is None:
            continue
        spans = builtin_modules.thin(builtin_modules.snippet_spans(text), split)
        out.extend((text[a:b], byte_labels(text[a:b], labels[a:b])) for a, b in spans)
    return tuple(out)
