"""`validate_data_config`: the data section's cheap checks, as one-line errors naming the field.

Run before anything heavy (the training loop, `make_pipeline`); touches no data.
"""
from __future__ import annotations

from scaling.data.tokenizer import make_tokenizer


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
    if d.tokenizer not in ("byte", "sentencepiece", "words"):
        _check_published_tokenizer(d)  # also raises the unknown-tokenizer error
    if d.seq_len <= 0 or (d.objective in ("mlm", "task") and d.seq_len < 3):
        raise ValueError(f"data.seq_len: must be positive (mlm, task: at least 3), "
                         f"got {d.seq_len}")
    if d.target_len < 0:
        raise ValueError(f"data.target_len: must be >= 0 (0 = seq_len), got {d.target_len}")
    held_out = d.dataset == sources.BUILTIN or (d.dataset == sources.FILES
                                                and not d.get("eval_files", ""))
    if held_out and not 0.0 < d.eval_fraction < 1.0:
        raise ValueError(f"data.eval_fraction: the held-out fraction of documents must be in "
                         f"(0, 1), got {d.eval_fraction}")
    if not 0.0 <= d.mask_rate <= 1.0:
        raise ValueError(f"data.mask_rate: must be in [0, 1], got {d.mask_rate}")
    if not 0.0 < d.noise_density < 1.0:
        raise ValueError(f"data.noise_density: must be in (0, 1), got {d.noise_density}")
    if d.objective == "permutation_lm" and not d.perm_k >= 1:
        raise ValueError(f"data.perm_k: must be >= 1 (K = 1 predicts every position), "
                         f"got {d.perm_k!r}")
    if d.objective == "translation" and not d.target_key:
        raise ValueError("data.target_key: translation needs the target language key, e.g. 'en'")
    if d.objective == "translation" and d.dataset in (sources.BUILTIN, sources.FILES):
        raise ValueError("data.dataset: translation needs a TFDS translation dataset, "
                         f"e.g. 'wmt14_translate/de-en', not {d.dataset!r}")
    if d.dataset == sources.FILES and not d.get("files", ""):
        raise ValueError("data.files: dataset='files' needs comma-separated globs of "
                         "jsonl, parquet, array_record or text files")
    if config.train.batch_size <= 0:
        raise ValueError(f"train.batch_size: must be a positive number of sequences, got "
                         f"{config.train.batch_size}")
    if config.train.micro_batches <= 0 or config.train.batch_size % config.train.micro_batches:
        raise ValueError(f"train.batch_size: {config.train.batch_size} is not divisible by "
                         f"train.micro_batches={config.train.micro_batches}")
    if d.objective == "captioning" or d.dataset == "shapes":
        text_only = (d.dataset in (sources.BUILTIN, sources.FILES)
                     or d.dataset.startswith(sources.PREPARED))
        if d.objective != "captioning" or text_only:
            raise ValueError(f"data.objective: the captioning datasets (data.dataset='shapes' "
                             f"or a TFDS image+caption set) need objective 'captioning'; got "
                             f"dataset={d.dataset!r}, objective={d.objective!r}")
        from scaling.data import captions
        if d.dataset != captions.SHAPES:
            sources.check_prepared(d)
        captions.check_captioning_data(config, make_tokenizer(d))
    elif d.objective == "task":  # labelled fine-tuning data (scaling.tasks checks the head)
        from scaling.tasks import registry
        registry.get(d.dataset)
        if d.dataset.startswith("glue/"):
            sources.check_dataset_name(d.dataset, d.data_dir)
    elif d.dataset.startswith(sources.PREPARED):
        from scaling.data import prepared
        prepared.check_meta(d, make_tokenizer(d))  # tokenizer, seq_len, objective agree
    elif d.dataset == sources.BUILTIN:
        from scaling.data import builtin
        # raises the data.corpus error when empty
        builtin.resolve_corpus(d.corpus, d.get("corpus_exclude", ""))
    else:
        sources.check_prepared(d)  # a known name whose files exist here


def _check_published_tokenizer(d) -> None:
    """The files of a published tokenizer load, and it has the special tokens that the
    objective needs."""
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
