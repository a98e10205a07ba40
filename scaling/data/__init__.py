"""Input pipeline: tokenizers, the builtin TFDS corpus, objectives and the grain pipeline.

  tokenizer.py   byte (default) and SentencePiece tokenizers, fixed special ids
  builtin.py     the offline corpus (Python stdlib or the user's files) as a TFDS dataset
  sources.py     documents of a split, builtin or any prepared TFDS dataset
  packing.py     documents -> fixed-length token chunks
  objectives.py  chunk -> example: causal_lm, mlm, span_corruption, translation
  pipeline.py    grain: global order, host sharding, batching, prefetch, checkpointable state
  stats.py       unigram entropy, the baseline a trained model must beat

Typical use (in the training loop):

  validate_data_config(config)                 # cheap, one-line errors, before anything heavy
  train_iter = make_pipeline(config, "train", process_index=jax.process_index(),
                             process_count=jax.process_count())
  batch = next(train_iter)                     # this host's rows of the global batch
"""
from __future__ import annotations

from scaling.data.tokenizer import BYTE_VOCAB_SIZE, make_tokenizer

_TOKENIZERS = ("byte", "sentencepiece")


def validate_data_config(config) -> None:
    """Raises a one-line ValueError naming the bad field; touches no data.

    Checks `data.objective`, `data.tokenizer`, `data.seq_len`/`data.target_len`,
    `data.dataset` (a TFDS name lookup), `data.corpus` (the builtin corpus has files),
    and that `train.batch_size` divides into `train.micro_batches`.
    """
    from scaling.data import objectives, sources  # deferred: sources imports TFDS

    d = config.data
    if d.objective not in (*objectives.OBJECTIVES, "task"):
        raise ValueError(f"data.objective: unknown objective {d.objective!r}; "
                         f"use one of {', '.join(objectives.OBJECTIVES)}, task")
    if d.tokenizer not in _TOKENIZERS:
        raise ValueError(f"data.tokenizer: unknown tokenizer {d.tokenizer!r}; "
                         f"use one of {', '.join(_TOKENIZERS)}")
    if d.seq_len <= 0 or (d.objective in ("mlm", "task") and d.seq_len < 3):
        raise ValueError(f"data.seq_len: must be positive (mlm, task: at least 3), "
                         f"got {d.seq_len}")
    if d.target_len < 0:
        raise ValueError(f"data.target_len: must be >= 0 (0 = seq_len), got {d.target_len}")
    if not 0.0 <= d.mask_rate <= 1.0:
        raise ValueError(f"data.mask_rate: must be in [0, 1], got {d.mask_rate}")
    if not 0.0 < d.noise_density < 1.0:
        raise ValueError(f"data.noise_density: must be in (0, 1), got {d.noise_density}")
    if d.objective == "permutation_lm" and not d.get("perm_k", 6) >= 1:
        raise ValueError(f"data.perm_k: must be >= 1 (K = 1 predicts every position), "
                         f"got {d.get('perm_k')!r}")
    if d.objective == "translation" and not d.target_key:
        raise ValueError("data.target_key: translation needs the target language key, e.g. 'en'")
    if d.objective == "translation" and d.dataset == sources.BUILTIN:
        raise ValueError("data.dataset: translation needs a TFDS translation dataset, "
                         "e.g. 'wmt14_translate/de-en', not 'builtin'")
    if config.train.micro_batches <= 0 or config.train.batch_size % config.train.micro_batches:
        raise ValueError(f"train.batch_size: {config.train.batch_size} is not divisible by "
                         f"train.micro_batches={config.train.micro_batches}")
    if d.objective == "task":  # labelled fine-tuning data (scaling.tasks checks the head)
        from scaling.tasks import registry
        registry.get(d.dataset)
        if d.dataset.startswith("glue/"):
            sources.check_dataset_name(d.dataset, d.data_dir)
    elif d.dataset == sources.BUILTIN:
        from scaling.data import builtin
        # raises the data.corpus error when empty
        builtin.resolve_corpus(d.corpus, d.get("corpus_exclude", ""))
    else:
        sources.check_dataset_name(d.dataset, d.data_dir)


def make_pipeline(config, split="train", **kwargs):
    """See `scaling.data.pipeline.make_pipeline` (imported lazily: grain/TFDS are slow)."""
    from scaling.data import pipeline
    return pipeline.make_pipeline(config, split, **kwargs)


def unigram_entropy(config, split: str = "validation") -> float:
    """See `scaling.data.stats.unigram_entropy`."""
    from scaling.data import stats
    return stats.unigram_entropy(config, split)


__all__ = ["BYTE_VOCAB_SIZE", "make_pipeline", "make_tokenizer", "unigram_entropy",
           "validate_data_config"]
