"""Input pipeline: tokenizers, the builtin TFDS corpus, objectives and the grain pipeline.

  tokenizer.py   byte (default), SentencePiece (trained here or published), the dispatcher
  hf_tokenizer.py  published tokenizers through `tokenizers`: tokenizer.json, GPT-2/RoBERTa
                 BPE, BERT WordPiece; their own special ids
  token_bytes.py bytes of text per token id, for losses in bits per byte
  builtin.py     the offline corpus (Python stdlib or the user's files) as a TFDS dataset
  sources.py     documents of a split, builtin, data.files or any prepared TFDS dataset
  files.py       data.files: jsonl, parquet, array_record or text files, local or by URL
  prepare.py     `scaling prepare-data`: tokenize and pack once into array_record shards
  prepared.py    reading them back: data.dataset=prepared:DIR
  packing.py     documents -> fixed-length token chunks
  objectives.py  chunk -> example: causal_lm, mlm, span_corruption, translation
  pipeline.py    grain: global order, host sharding, batching, prefetch, checkpointable state
  shapes.py      the built-in captioning set: rendered shapes with generated captions
  images.py      decode, resize, augment and normalise one image (captioning)
  captions.py    (image, captions) records -> captioning examples; their checks
  words.py       the word-level tokenizer (data.tokenizer=words) for captions
  stats.py       unigram entropy, the baseline a trained model must beat
  checks.py      validate_data_config: the cheap one-line checks of the data section

Typical use (in the training loop):

  validate_data_config(config)                 # cheap, one-line errors, before anything heavy
  train_iter = make_pipeline(config, "train", process_index=jax.process_index(),
                             process_count=jax.process_count())
  batch = next(train_iter)                     # this host's rows of the global batch
"""
from __future__ import annotations

from scaling.data.checks import validate_data_config
from scaling.data.tokenizer import BYTE_VOCAB_SIZE, make_tokenizer

def tokenizer_vocab_size(data_cfg) -> int:
    """Ids the tokenizer of `data_cfg` can produce, without training or reading a corpus."""
    if data_cfg.tokenizer == "sentencepiece":
        return int(data_cfg.sp_vocab_size)
    if data_cfg.tokenizer == "byte":
        return BYTE_VOCAB_SIZE
    return make_tokenizer(data_cfg).vocab_size  # a published tokenizer: read its files


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
