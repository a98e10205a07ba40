"""The grain input pipeline: text source -> chunks -> global order -> this host's rows -> batches.

  order[pos] = (example index, epoch)      deterministic shuffle per epoch from the seed
  host rows  = rows [p*b, (p+1)*b) of each global batch of G = train.batch_size examples
  example    = objective(chunk[index], rng(seed, index[, epoch]))       (objectives.py)
  batch      = grain MapDataset.batch(b), prefetched by threads (and processes, optionally)

Every host computes the same global order and builds only its own rows, so a multi-host run
sees exactly the batches a single host would have, split by rows. The returned iterator is
grain's `DatasetIterator`: `get_state()` / `set_state()` restore the exact position.
"""
from __future__ import annotations

import functools
import hashlib
import sys

import grain
import numpy as np

from scaling.data import objectives, packing, sources
from scaling.data.checks import validate_data_config
from scaling.data.tokenizer import make_tokenizer

_PAD_INDEX = -1  # order entry of an all-padding example that fills a finite pass's last batch


def _mix_seed(*parts: int) -> int:
    """A 32-bit seed from integers (so seed s, epoch e+1 is unrelated to seed s+1, epoch e)."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class GlobalOrder:
    """The single-host sequence of examples: position -> (example index, epoch).

    Epoch e visits all `num_examples` in a permutation seeded from (seed, e) (or in order
    when not shuffling). A finite pass is padded to whole global batches with `_PAD_INDEX`
    so no example is dropped; an endless one has (practically) unbounded length.
    """

    _FOREVER = sys.maxsize // 4  # "endless": far more examples than any run reads

    def __init__(self, num_examples: int, global_batch: int, *, seed: int, shuffle: bool,
                 num_epochs: int | None):
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.num_real = self._FOREVER if num_epochs is None else num_examples * num_epochs
        self._len = -(-self.num_real // global_batch) * global_batch

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, position: int) -> tuple[int, int]:
        if not 0 <= position < self._len:
            raise IndexError(position)
        epoch, offset = divmod(position, self.num_examples)
        if position >= self.num_real:
            return _PAD_INDEX, epoch
        if self.shuffle and self.num_examples > 1:
            offset = grain.experimental.index_shuffle(
                offset, max_index=self.num_examples - 1, seed=_mix_seed(self.seed, epoch),
                rounds=4)
        return int(offset), epoch


class HostRows:
    """This host's slice of `order`: rows [p*b, (p+1)*b) of every global batch of size G."""

    def __init__(self, order, global_batch: int, process_index: int, process_count: int):
        self.order = order
        self.global_batch = global_batch
        self.host_batch = global_batch // process_count
        self.offset = process_index * self.host_batch
        self._len = len(order) // global_batch * self.host_batch

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, k: int):
        step, row = divmod(k, self.host_batch)
        return self.order[step * self.global_batch + self.offset + row]


class ExampleMaker:
    """(example index, epoch) -> the objective's example dict; a plain picklable object."""

    def __init__(self, chunks, tokenizer, data_cfg, seed: int):
        self.chunks = chunks
        self.tok = tokenizer
        self.objective = data_cfg.objective
        self.seq_len = data_cfg.seq_len
        self.target_len = data_cfg.target_len or data_cfg.seq_len
        self.mask_rate = data_cfg.mask_rate
        self.dynamic_masking = data_cfg.dynamic_masking
        self.noise_density = data_cfg.noise_density
        self.mean_span_length = data_cfg.mean_span_length
        self.perm_k = data_cfg.perm_k  # permutation_lm: predict the last 1/K
        if self.objective == "permutation_lm" and not self.perm_k >= 1:
            raise ValueError(f"data.perm_k: must be >= 1 (K = 1 predicts every position), "
                             f"got {self.perm_k!r}")
        self.seed = seed
        self._empty = None

    def _rng(self, index: int, epoch: int, use_epoch: bool) -> np.random.Generator:
        key = [self.seed, index, epoch] if use_epoch else [self.seed, index]
        return np.random.default_rng(key)

    def __call__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        index, epoch = item
        if index == _PAD_INDEX:
            if self._empty is None:
                self._empty = objectives.empty_example(self((0, 0)))
            return self._empty
        chunk = self.chunks[index]
        if self.objective == "causal_lm":
            return objectives.causal_lm(chunk, self.seq_len, self.tok.pad_id)
        if self.objective == "mlm":
            # Static (BERT): the mask depends on the example only; dynamic (RoBERTa): and epoch.
            rng = self._rng(index, epoch, self.dynamic_masking)
            return objectives.mlm(chunk, self.seq_len, self.tok, self.mask_rate, rng)
        if self.objective == "span_corruption":
            return objectives.span_corruption(
                chunk, self.seq_len, self.target_len, self.tok, self.noise_density,
                self.mean_span_length, self._rng(index, epoch, True))
        if self.objective == "translation":
            source, target = chunk
            return objectives.translation(source, target, self.seq_len, self.target_len, self.tok)
        if self.objective == "permutation_lm":
            # A fresh factorization order every epoch, as XLNet samples one per step.
            return objectives.permutation_lm(chunk, self.seq_len, self.tok.pad_id, self.perm_k,
                                             self._rng(index, epoch, True))
        raise ValueError(f"data.objective: unknown objective {self.objective!r}")


# ----------------------------------------------------------------------------- chunks

@functools.lru_cache(maxsize=8)
def _packed_stream(cache_key, data_cfg_items, split: str):
    """The split's documents tokenized and joined by EOS, cached per process."""
    del cache_key  # part of the lru_cache key only
    data_cfg = _Cfg(dict(data_cfg_items))
    return packing.pack_documents(sources.open_split(data_cfg, split), make_tokenizer(data_cfg))


class _Cfg(dict):
    """A frozen attribute view of the data config, so cached functions can take it."""
    __getattr__ = dict.__getitem__


# The fields that decide a split's token stream (seq_len etc. only decide how it is cut).
_STREAM_FIELDS = ("dataset", "corpus", "corpus_exclude", "data_dir", "text_key", "target_key",
                  "objective", "eval_fraction", "tokenizer", "sp_vocab_size", "files",
                  "eval_files", "files_text_per_line")


def _frozen(data_cfg) -> tuple:
    return tuple((k, data_cfg.get(k, "")) for k in _STREAM_FIELDS)


def make_chunks(data_cfg, split: str, tokenizer):
    """The random-access chunk source for `split` (see packing.py, prepared.py)."""
    if data_cfg.dataset.startswith(sources.PREPARED):
        from scaling.data import prepared
        return prepared.PreparedChunks(prepared.prepared_dir(data_cfg), split,
                                       prepared.check_meta(data_cfg, tokenizer))
    docs = sources.open_split(data_cfg, split)
    if data_cfg.objective == "translation":
        return packing.PairChunks(docs, tokenizer)
    length, stride = objectives.chunk_length(data_cfg, tokenizer)
    if len(docs) > data_cfg.get("pack_max_documents", 200_000):
        return packing.DocumentChunks(docs, tokenizer, length)
    cache_key = (sources.dataset_key(data_cfg), tokenizer.key)
    stream = _packed_stream(cache_key, _frozen(data_cfg), split)
    return packing.PackedChunks(stream, length, stride)


# ----------------------------------------------------------------------------- pipeline

def check_batch(config, process_count: int) -> None:
    """Raises a one-line ValueError naming `train.batch_size` when it cannot be split."""
    g = config.train.batch_size
    if g <= 0 or g % process_count:
        raise ValueError(f"train.batch_size: global batch {g} is not divisible by the "
                         f"{process_count} processes")
    if g % config.train.micro_batches:
        raise ValueError(f"train.batch_size: global batch {g} is not divisible by "
                         f"train.micro_batches={config.train.micro_batches}")


def make_pipeline(config, split: str = "train", *, process_index: int = 0,
                  process_count: int = 1, seed: int | None = None,
                  num_epochs: int | None = None):
    """Returns this host's iterator of batches for `split`.

    Args:
      config: the full run config (reads `config.data`, `config.train.batch_size` = the
        GLOBAL batch in sequences, and `config.train.seed`).
      split: 'train' or 'validation'.
      process_index, process_count: this host and the number of hosts (jax.process_*).
      seed: shuffle/masking seed; default `config.train.seed`.
      num_epochs: None repeats forever; k makes one finite pass over k epochs, whose last
        global batch is padded with all-zero-weight examples so every example counts once.

    Returns:
      A grain `DatasetIterator` of dicts of numpy arrays with leading dim
      `batch_size // process_count` (keys per objective: see objectives.py), with
      `get_state()` / `set_state(state)` for checkpointing. Training shuffles (when
      `data.shuffle`); validation keeps the stored order.
    """
    validate_data_config(config)
    check_batch(config, process_count)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    data_cfg = config.data
    seed = config.train.seed if seed is None else seed
    tokenizer = make_tokenizer(data_cfg)
    if data_cfg.objective == "task":  # labelled items (scaling.tasks) instead of text chunks
        from scaling.tasks import data as task_data
        chunks = task_data.open_task(config, split)
        maker = task_data.TaskExampleMaker(chunks, tokenizer, data_cfg.seq_len,
                                           config.model.family, config.task.kind)
    elif data_cfg.objective == "captioning":  # (image, captions) records (captions.py)
        from scaling.data import captions
        chunks = captions.open_split(config, split)
        maker = captions.CaptionExampleMaker(chunks, tokenizer, config, seed,
                                             train=split == "train")
    else:
        chunks = make_chunks(data_cfg, split, tokenizer)
        maker = ExampleMaker(chunks, tokenizer, data_cfg, seed)

    global_batch = config.train.batch_size
    order = GlobalOrder(len(chunks), global_batch, seed=seed,
                        shuffle=bool(data_cfg.shuffle) and split == "train", num_epochs=num_epochs)
    rows = HostRows(order, global_batch, process_index, process_count)

    ds = grain.MapDataset.source(rows).map(maker).batch(rows.host_batch, drop_remainder=True)
    # Threads build the next batches while the accelerator runs the current step.
    read = grain.ReadOptions(num_threads=data_cfg.get("read_threads", 2),
                             prefetch_buffer_size=data_cfg.get("prefetch_batches", 4))
    it_ds = ds.to_iter_dataset(read)
    if data_cfg.worker_count > 0:
        # grain's worker processes read absl flags; a script not run by absl.app has not
        # parsed them, which grain treats as an error. Defaults are what we want.
        from absl import flags
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
    return iter(it_ds)
