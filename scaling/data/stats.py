"""Corpus statistics: the unigram entropy baseline printed beside the training loss."""
from __future__ import annotations

import numpy as np

from scaling.data import captions, packing, sources
from scaling.data.tokenizer import make_tokenizer

_MAX_DOCUMENTS = 20_000  # enough for a stable estimate on large datasets
_MAX_TOKENS = 20_000_000  # the same, for a prepared dataset (token ids, no documents)


def token_entropy(ids: np.ndarray) -> float:
    """Entropy in nats of the empirical distribution of `ids`."""
    counts = np.bincount(np.asarray(ids, np.int64).reshape(-1))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def unigram_entropy(config, split: str = "validation") -> float:
    """Unigram entropy (nats/token) of `split`'s tokens, documents joined by EOS.

    The loss of a model that ignores context; a trained model should be well below it.
    For translation it is the entropy of the target side (the side the loss is on).
    Datasets with more than 20,000 documents are estimated from the first 20,000 (prepared
    ones from their first rows).

    Args:
      config: the full run config (reads `config.data`).
      split: 'train' or 'validation'.
    """
    data_cfg = config.data
    if data_cfg.objective == "captioning":  # the caption tokens the loss is on
        return _caption_entropy(config, split)
    if data_cfg.dataset.startswith(sources.PREPARED):
        from scaling.data import prepared
        stream = prepared.token_stream(prepared.prepared_dir(data_cfg), split, _MAX_TOKENS)
        return token_entropy(stream)
    tokenizer = make_tokenizer(data_cfg)
    docs = sources.open_split(data_cfg, split)
    if data_cfg.objective == "translation":
        docs = _TargetSide(docs)
    stream = packing.pack_documents(docs, tokenizer, limit=_MAX_DOCUMENTS)
    if not len(stream):
        raise ValueError(f"data.dataset: split {split!r} has no tokens")
    return token_entropy(stream)


class _TargetSide:
    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i][1]


def _caption_entropy(config, split: str = "validation", limit: int = 20_000) -> float:
    """Entropy (nats) of the caption tokens the loss is on: ids + EOS of the caption each
    example of `split` uses (validation: the first; train: every one), over the first
    `limit` records. The loss of a model that ignores the image and the words before."""
    tok = make_tokenizer(config.data)
    source = captions.open_split(config, split)
    texts = [c for i in range(min(limit, len(source)))
             for c in (source.captions(i) if split == "train" else source.captions(i)[:1])]
    t = config.data.target_len or config.data.seq_len
    ids = [np.append(np.asarray(tok.encode(c), np.int32)[:t - 1], tok.eos_id) for c in texts]
    return token_entropy(np.concatenate(ids))
