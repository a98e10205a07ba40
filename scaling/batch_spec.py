"""What a batch is, per objective: its keys, and each key's shape and dtype.

The one definition: the data pipeline yields these (scaling/data/objectives.py builds one
example, the pipeline stacks them), the model reads every key but the labels, and
`scaling compile`, the benchmarks and model initialisation build stand-ins from it.
Plain numpy, no JAX.
"""
from __future__ import annotations

import numpy as np

SOURCE, TARGET = "source", "target"   # a key's length: data.seq_len | data.target_len
IMAGE = "image"                       # an image [S, S, 3] float32, S = model.image_size
LABEL_KEYS = ("targets", "weights")   # read by the loss; every other key is the model's input

# Objective -> {key: which length it has}. Ids and ranks are int32, weights and images
# float32.
BATCH_KEYS = {
    "causal_lm": {"inputs": SOURCE, "targets": SOURCE, "weights": SOURCE},
    "mlm": {"inputs": SOURCE, "targets": SOURCE, "weights": SOURCE, "token_types": SOURCE,
            "input_mask": SOURCE},
    "span_corruption": {"inputs": SOURCE, "decoder_inputs": TARGET, "targets": TARGET,
                        "weights": TARGET},
    "translation": {"inputs": SOURCE, "decoder_inputs": TARGET, "targets": TARGET,
                    "weights": TARGET},
    "permutation_lm": {"inputs": SOURCE, "targets": SOURCE, "weights": SOURCE,
                       "perm_ranks": SOURCE, "token_types": SOURCE},
    "captioning": {"images": IMAGE, "decoder_inputs": TARGET, "targets": TARGET,
                   "weights": TARGET},
}

# The objectives each model family trains on; the first one defines the family's inputs.
FAMILY_OBJECTIVES = {
    "decoder": ("causal_lm",),
    "encoder": ("mlm",),
    "encoder_decoder": ("span_corruption", "translation"),
    "xlnet": ("permutation_lm",),
    "captioning": ("captioning",),
}


def batch_spec(objective: str, batch_size: int, seq_len: int, target_len: int = 0,
               image_size: int = 0) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of one batch of `objective`, as the data pipeline yields it.

    Args:
      objective: a BATCH_KEYS name (data.objective).
      batch_size: rows, B.
      seq_len: data.seq_len (encoder-decoder: the source length S).
      target_len: data.target_len, the decoder's length T (0 = seq_len).
      image_size: model.image_size, the side of a captioning image (captioning only).
    """
    if objective not in BATCH_KEYS:
        raise ValueError(f"data.objective: no batch spec for {objective!r}; objectives: "
                         + ", ".join(BATCH_KEYS))
    if IMAGE in BATCH_KEYS[objective].values() and image_size <= 0:
        raise ValueError(f"model.image_size: the {objective} batch needs a positive image "
                         f"size, got {image_size}")
    shapes = {SOURCE: (batch_size, seq_len), TARGET: (batch_size, target_len or seq_len),
              IMAGE: (batch_size, image_size, image_size, 3)}
    return {key: (shapes[length],
                  np.dtype(np.float32 if key in ("weights", "images") else np.int32))
            for key, length in BATCH_KEYS[objective].items()}


def model_input_spec(family: str, batch_size: int, seq_len: int, target_len: int = 0,
                     image_size: int = 0) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of what a `family` model reads: its batch without the labels."""
    spec = batch_spec(FAMILY_OBJECTIVES[family][0], batch_size, seq_len, target_len,
                      image_size)
    return {k: v for k, v in spec.items() if k not in LABEL_KEYS}
