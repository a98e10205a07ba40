"""Captioning data: (image, captions) records -> the "captioning" objective's examples.

  open_split(config, split) -> CaptionSource   records of data.dataset: "shapes" (the
                               built-in set, scaling.data.shapes, prepared once in the TFDS
                               data dir at model.image_size) or any prepared TFDS dataset
                               read at data.image_key / data.caption_key
  CaptionExampleMaker          (index, epoch) -> {images, decoder_inputs, targets, weights}
  check_captioning_data(config)  the one-line errors raised before anything is compiled

An example: the image decoded, resized to S = model.image_size, augmented (training only,
data.augment, from an rng seeded by (seed, index, epoch)) and normalised by data.image_mean
/ data.image_std; one of the record's captions (training: drawn per (index, epoch);
validation: the first) as ids c, with decoder_inputs = [BOS] + c and targets = c + [EOS],
padded to T = data.target_len (weights 1.0 on real targets).
"""
from __future__ import annotations

import functools

import numpy as np

from scaling.data import images as images_lib

_PAD_INDEX = -1  # = scaling.data.pipeline._PAD_INDEX: a zero-weight example filling a batch
SHAPES = "shapes"             # data.dataset of the built-in set
_CHECK_RECORDS = 1000         # TFDS datasets: captions checked against target_len up front


def is_captioning(data_cfg) -> bool:
    return data_cfg.get("objective", "") == "captioning"


def caption_list(value) -> list[str]:
    """A caption feature (str, bytes, or a list/array of them) -> list of str."""
    if isinstance(value, (str, bytes)):
        value = [value]
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
            for v in np.asarray(value, dtype=object).reshape(-1)]


def field(record, path: str, config_field: str):
    """record[a][b] for path "a/b" (a nested TFDS feature); a one-line error naming
    `config_field` and the keys the record has when a part is missing."""
    value = record
    for part in path.split("/"):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(value) if isinstance(value, dict) else []
            raise ValueError(f"data.{config_field}: the dataset's records have no feature "
                             f"{path!r}; set data.{config_field} to one of "
                             f"{', '.join(map(repr, keys)) or '(none)'}")
        value = value[part]
    return value


class CaptionSource:
    """A TFDS data source's records as (image value, [captions]) pairs, random access."""

    def __init__(self, records, image_key: str, caption_key: str):
        self.records = records
        self.image_key, self.caption_key = image_key, caption_key

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        return (field(record, self.image_key, "image_key"),
                caption_list(field(record, self.caption_key, "caption_key")))

    def captions(self, index: int) -> list[str]:
        return caption_list(field(self.records[index], self.caption_key, "caption_key"))


@functools.lru_cache(maxsize=8)
def _shapes_sources(data_dir: str, seed: int, image_size: int, num_train: int,
                    num_validation: int):
    from scaling.data import shapes  # noqa: PLC0415  (imports TFDS)
    return shapes.load_shapes(data_dir or None, seed, image_size, num_train, num_validation)


def shapes_fields(data_cfg) -> tuple[int, int, int]:
    """(seed, num_train, num_validation) of the built-in set."""
    return (int(data_cfg.get("shapes_seed", 0)), int(data_cfg.get("shapes_num_train", 20000)),
            int(data_cfg.get("shapes_num_validation", 1000)))


def open_split(config, split: str) -> CaptionSource:
    """The records of `split` ('train' or 'validation') of config.data.dataset."""
    d = config.data
    if d.dataset == SHAPES:
        seed, num_train, num_validation = shapes_fields(d)
        records = _shapes_sources(d.data_dir, seed, int(config.model.image_size), num_train,
                                  num_validation)[split]
        return CaptionSource(records, "image", "captions")
    from scaling.data import sources  # noqa: PLC0415  (imports TFDS)
    try:
        records = sources._named_source(d, split)  # pylint: disable=protected-access
    except (ValueError, KeyError) as e:
        if split != "validation" or "split" not in str(e).lower():
            raise
        records = sources._named_source(d, "test")  # pylint: disable=protected-access
    return CaptionSource(records, d.image_key, d.caption_key)


def train_texts(data_cfg):
    """The train split's texts a tokenizer learns from: captions of a captioning dataset,
    else the documents (scaling.data.sources.iter_texts)."""
    if is_captioning(data_cfg):
        return iter_captions(data_cfg, "train")
    from scaling.data import sources  # noqa: PLC0415  (imports TFDS)
    return sources.iter_texts(data_cfg, "train")


def iter_captions(data_cfg, split: str, limit: int | None = None):
    """Every caption of the first `limit` records of `split` (tokenizer training, stats).

    The built-in set's captions are regenerated from its seeds without rendering (at the
    builder's default image size: positions scale with it, the words do not)."""
    if data_cfg.dataset == SHAPES:
        from scaling.data import shapes  # noqa: PLC0415
        seed, num_train, num_validation = shapes_fields(data_cfg)
        n = num_train if split == "train" else num_validation
        for index in range(n if limit is None else min(n, limit)):
            rng = np.random.default_rng(shapes.example_seed(seed, split, index))
            yield from shapes.captions(shapes.sample_objects(rng, 64, split))
        return
    from scaling.data import sources  # noqa: PLC0415
    records = sources._named_source(data_cfg, split)  # pylint: disable=protected-access
    n = len(records) if limit is None else min(limit, len(records))
    for index in range(n):
        yield from caption_list(field(records[index], data_cfg.caption_key, "caption_key"))


def encode_caption(caption: str, tok, target_len: int) -> dict[str, np.ndarray]:
    """decoder_inputs = [BOS] + ids, targets = ids + [EOS], weights 1.0 on real targets;
    all [T], padded with tok.pad_id; ids cut to T - 1 (the checks reject longer captions
    before a run starts)."""
    ids = np.asarray(tok.encode(caption), np.int32)[:target_len - 1]
    n = len(ids) + 1
    inputs = np.full(target_len, tok.pad_id, np.int32)
    targets = np.full(target_len, tok.pad_id, np.int32)
    inputs[0], inputs[1:n] = tok.bos_id, ids
    targets[:n - 1], targets[n - 1] = ids, tok.eos_id
    weights = (np.arange(target_len) < n).astype(np.float32)
    return {"decoder_inputs": inputs, "targets": targets, "weights": weights}


class CaptionExampleMaker:
    """(example index, epoch) -> one captioning example; a plain picklable object."""

    def __init__(self, source: CaptionSource, tokenizer, config, seed: int, train: bool):
        d = config.data
        self.source, self.tok = source, tokenizer
        self.image_size = int(config.model.image_size)
        self.target_len = d.target_len or d.seq_len
        self.mean, self.std = tuple(d.image_mean), tuple(d.image_std)
        self.augment = d.get("augment", "none") if train else "none"
        self.train, self.seed = train, seed
        self.dropout = float(d.get("caption_dropout", 0.0)) if train else 0.0
        self.drop_id = getattr(tokenizer, "unk_id", tokenizer.mask_id)
        self.grey = (float(d.get("shapes_grey_fraction", 0.0))
                     if train and d.dataset == SHAPES else 0.0)

    def __call__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
        index, epoch = item
        if index == _PAD_INDEX:  # an all-zero-weight example filling a finite pass
            s, t = self.image_size, self.target_len
            return {"images": np.zeros((s, s, 3), np.float32),
                    "decoder_inputs": np.zeros(t, np.int32), "targets": np.zeros(t, np.int32),
                    "weights": np.zeros(t, np.float32)}
        image, captions = self.source[index]
        rng = np.random.default_rng([self.seed, index, epoch])
        caption = captions[int(rng.integers(len(captions)))] if self.train else captions[0]
        image = images_lib.resize(images_lib.decode(image), self.image_size)
        image = images_lib.augment(image, rng, self.augment)
        if self.grey and rng.random() < self.grey:
            image, caption = _colourless(image, caption)
        example = encode_caption(caption, self.tok, self.target_len)
        if self.dropout:  # word dropout on the decoder's inputs (never BOS, never padding)
            inputs = example["decoder_inputs"]
            drop = (rng.random(inputs.shape) < self.dropout) & (inputs != self.tok.pad_id)
            drop[0] = False
            example["decoder_inputs"] = np.where(drop, self.drop_id, inputs).astype(np.int32)
        return {"images": images_lib.normalise(image, self.mean, self.std), **example}


def _colourless(image: np.ndarray, caption: str) -> tuple[np.ndarray, str]:
    """The shapes image with every object in one grey and its caption without colour words:
    a shape then looks the same whatever its colour (objects are far brighter than the
    background in some channel, so the brightest channel finds them)."""
    from scaling.data import shapes  # noqa: PLC0415
    on = image.max(axis=-1, keepdims=True) > 2 * max(shapes.BACKGROUND)
    grey = np.where(on, 200, np.asarray(shapes.BACKGROUND)).astype(image.dtype)
    words = [w for w in caption.split() if w not in shapes.COLOURS]
    return grey, " ".join(words)


# ----------------------------------------------------------------------------- checks

def longest_shapes_caption(tok) -> int:
    """Tokens of the longest caption the shapes grammar can produce (three objects, each
    described by the longest words, joined by the longest relation), without BOS/EOS."""
    from scaling.data import shapes  # noqa: PLC0415
    longest = 0
    for size in shapes.SIZES:
        for colour in shapes.COLOURS:
            for shape in shapes.SHAPES:
                desc = f"a {size} {colour} {shape}"
                for rel in ("left of", "right of", "above", "below"):
                    clause = f"{desc} {rel} {desc}"
                    longest = max(longest, len(tok.encode(f"{clause} and {clause}")))
    return longest


def check_captioning_data(config, tok) -> None:
    """One-line ValueErrors, before compiling: the record's keys exist (TFDS datasets),
    the images can be normalised, and every caption (shapes: the longest the grammar
    makes; TFDS: the first 1000 train records') fits data.target_len with BOS/EOS."""
    d = config.data
    t = d.target_len or d.seq_len
    if not 0.0 <= d.get("caption_dropout", 0.0) < 1.0:
        raise ValueError(f"data.caption_dropout: must be in [0, 1), got {d.caption_dropout!r}")
    if d.get("augment", "none") not in images_lib.AUGMENTS:
        raise ValueError(f"data.augment: unknown {d.augment!r}; allowed: "
                         f"{', '.join(images_lib.AUGMENTS)}")
    for name in ("image_mean", "image_std"):
        if len(tuple(d[name])) not in (1, 3):
            raise ValueError(f"data.{name}: one value or one per RGB channel, got {d[name]}")
    if min(tuple(d.image_std)) <= 0:
        raise ValueError(f"data.image_std: must be positive, got {tuple(d.image_std)}")
    if d.dataset == SHAPES:
        _, num_train, num_validation = shapes_fields(d)
        if min(num_train, num_validation) < 1:
            raise ValueError("data.shapes_num_train/shapes_num_validation: each split needs "
                             "at least one example")
        longest, where = longest_shapes_caption(tok), "the shapes grammar's longest caption"
    else:
        from scaling.data import sources  # noqa: PLC0415
        records = sources._named_source(d, "train")  # pylint: disable=protected-access
        if not len(records):
            raise ValueError(f"data.dataset: {d.dataset!r} has an empty train split")
        first = records[0]
        field(first, d.image_key, "image_key")
        field(first, d.caption_key, "caption_key")
        longest = max(len(tok.encode(c)) for i in range(min(_CHECK_RECORDS, len(records)))
                      for c in caption_list(field(records[i], d.caption_key, "caption_key")))
        where = f"the longest of the first {min(_CHECK_RECORDS, len(records))} train captions"
    if longest + 1 > t:
        raise ValueError(f"data.target_len: {where} has {longest} tokens, +1 for BOS/EOS "
                         f"needs {longest + 1} > data.target_len={t}; raise data.target_len "
                         f"(and model.max_len) to at least {longest + 1}")
