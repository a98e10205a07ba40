"""Input pipeline: tokenizers, the builtin TFDS corpus, objectives and the grain pipeline.

  tokenizer.py   byte (default) and SentencePiece tokenizers, fixed special ids
  hf_tokenizer.py  a Hugging Face tokenizer.json (data.tokenizer=hf:<dir>), its own special ids
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
    if d.tokenizer.startswith("hf:"):
        _check_hf_tokenizer(d)
    elif d.tokenizer not in _TOKENIZERS:
        raise ValueError(f"data.tokenizer: unknown tokenizer {d.tokenizer!r}; "
                         f"use one of {', '.join(_TOKENIZERS)}, or hf:<dir>")
    if d.seq_len <= 0 or (d.objective in ("mlm", "task") and d.seq_len < 3):
        raise ValueError(f"data.seq_len: must be positive (mlm, task: at least 3), "
                         f"got {d.seq_len}")
    if d.target_len < 0:
        raise ValueError(f"data.target_len: must be >= 0 (0 = seq_len), got {d.target_len}")
    if d.dataset == sources.BUILTIN and not 0.0 < d.eval_fraction < 1.0:
        raise ValueError(f"data.eval_fraction: the held-out fraction of documents must be in "
                         f"(0, 1), got {d.eval_fraction}")
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
    if config.train.batch_size <= 0:
        raise ValueError(f"train.batch_size: must be a positive number of sequences, got "
                         f"{config.train.batch_size}")
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
        sources.check_prepared(d)  # a known name whose files exist here


def _check_hf_tokenizer(d) -> None:
    """The special tokens the objective needs exist in an hf:<dir> tokenizer."""
    tok = make_tokenizer(d)  # raises the data.tokenizer error for a missing/bad file
    if d.objective == "mlm" and tok.mask_id is None:
        raise ValueError(f"data.tokenizer: {d.tokenizer!r} has no mask token; the mlm "
                         "objective needs one")
    if d.objective in ("span_corruption", "translation") and (
            tok.pad_id != 0 or tok.pad_id == tok.eos_id):
        # The encoder-decoder batches carry no input mask (the model takes id 0 as padding)
        # and weigh targets by `targets != pad`, which would drop EOS when pad == eos.
        raise ValueError(f"data.tokenizer: {d.tokenizer!r} pads with id {tok.pad_id} (eos "
                         f"{tok.eos_id}); the {d.objective} objective needs padding at id 0, "
                         "distinct from eos")
    if d.objective == "span_corruption" and not tok.sentinel_ids:
        raise ValueError(f"data.tokenizer: {d.tokenizer!r} has no <extra_id_N> sentinels; "
                         "span_corruption needs them")


def tokenizer_vocab_size(data_cfg) -> int:
    """Ids the tokenizer of `data_cfg` can produce, without training or reading a corpus."""
    if data_cfg.tokenizer == "sentencepiece":
        return int(data_cfg.sp_vocab_size)
    if data_cfg.tokenizer.startswith("hf:"):
        return make_tokenizer(data_cfg).vocab_size
    return BYTE_VOCAB_SIZE


def check_vocab_fits(config, model_vocab_size: int) -> None:
    """One-line ValueError when the tokenizer yields ids past the model's embedding rows.

    An out-of-range id would not fail: XLA clamps gathers, so it would silently read the
    last row. Checked before anything is compiled.
    """
    size = tokenizer_vocab_size(config.data)
    if size > model_vocab_size:
        raise ValueError(f"model.vocab_size: {model_vocab_size} is smaller than the "
                         f"{size} ids of data.tokenizer={config.data.tokenizer!r}; set "
                         "model.vocab_size=0 to take the tokenizer's")


def make_pipeline(config, split="train", **kwargs):
    """See `scaling.data.pipeline.make_pipeline` (imported lazily: grain/TFDS are slow)."""
    from scaling.data import pipeline
    return pipeline.make_pipeline(config, split, **kwargs)


def unigram_entropy(config, split: str = "validation") -> float:
    """See `scaling.data.stats.unigram_entropy`."""
    from scaling.data import stats
    return stats.unigram_entropy(config, split)


__all__ = ["BYTE_VOCAB_SIZE", "check_vocab_fits", "make_pipeline", "make_tokenizer",
           "tokenizer_vocab_size", "unigram_entropy", "validate_data_config"]
