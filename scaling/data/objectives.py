"""Training objectives as pure numpy functions: token chunk in, one example dict out.

Every function takes the chunk of token ids an example is built from (see `packing.py`)
and, where the objective is random, a `np.random.Generator` that the pipeline seeds from
(seed, example index[, epoch]); so every example is a pure function of its arguments.
Outputs are int32 ids and float32 weights, unbatched ([T] not [B, T]); `pipeline.py` batches.

The keys, shapes and dtypes of each objective's examples are scaling.batch_spec's.
"""
from __future__ import annotations

import numpy as np

from scaling.batch_spec import BATCH_KEYS

OBJECTIVES = tuple(BATCH_KEYS)


def _pad_to(ids: np.ndarray, length: int, pad_id: int) -> np.ndarray:
    out = np.full((length,), pad_id, np.int32)
    out[:len(ids)] = ids[:length]
    return out


# ----------------------------------------------------------------------------- causal LM

def causal_lm(window: np.ndarray, seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Next-token prediction on one window of up to seq_len + 1 tokens.

    Args:
      window: [<= T+1] ids from the packed stream (documents joined by EOS); the last
        window of a split may be short and is padded.
      seq_len: T.
      pad_id: the padding id (weights are 0 where the target is padding).

    Returns:
      inputs = window[:-1], targets = window[1:], weights (1.0 on real targets), all [T].
    """
    padded = _pad_to(np.asarray(window), seq_len + 1, pad_id)
    num_real = min(len(window), seq_len + 1)
    weights = (np.arange(seq_len) < num_real - 1).astype(np.float32)
    return {"inputs": padded[:-1], "targets": padded[1:], "weights": weights}


# ----------------------------------------------------------------------------- MLM (BERT)

def mlm(tokens: np.ndarray, seq_len: int, tok, mask_rate: float,
        rng: np.random.Generator) -> dict[str, np.ndarray]:
    """BERT masked-LM example: `[CLS] tokens [SEP] PAD...`, with `mask_rate` of tokens selected.

    Of the real, non-special tokens, round(mask_rate * n) positions are selected (at least
    one when there is any); each becomes MASK with p=0.8, a random regular token with p=0.1,
    or stays unchanged with p=0.1. Specials (CLS, SEP, EOS between documents...) are never
    selected.

    Args:
      tokens: [<= T-2] ids (the chunk between CLS and SEP).
      seq_len: T.
      tok: the tokenizer (for bos/sep/pad/mask ids, `special_ids`, `regular_ids`).
      mask_rate: fraction of candidate tokens selected for prediction.
      rng: the example's generator; static masks seed it from the index only.

    Returns:
      inputs (masked ids), targets (original ids), weights (1.0 at selected positions),
      token_types (zeros), input_mask (1 on CLS/tokens/SEP, 0 on PAD); all [T].
    """
    tokens = np.asarray(tokens, np.int32)[:seq_len - 2]
    original = np.concatenate([[tok.cls_id], tokens, [tok.sep_id]]).astype(np.int32)
    targets = _pad_to(original, seq_len, tok.pad_id)
    input_mask = (np.arange(seq_len) < len(original)).astype(np.int32)

    candidates = np.flatnonzero(~np.isin(targets, tok.special_ids) & (input_mask == 1))
    num_selected = int(round(mask_rate * len(candidates)))
    if len(candidates) and mask_rate > 0:
        num_selected = max(1, num_selected)
    selected = np.sort(rng.choice(candidates, size=num_selected, replace=False))
    # One uniform draw per selected position decides its fate: <0.8 MASK, <0.9 random.
    fate = rng.random(num_selected)
    inputs = targets.copy()
    to_mask = selected[fate < 0.8]
    to_random = selected[(fate >= 0.8) & (fate < 0.9)]
    inputs[to_mask] = tok.mask_id
    inputs[to_random] = rng.choice(tok.regular_ids, size=len(to_random))
    weights = np.zeros((seq_len,), np.float32)
    weights[selected] = 1.0
    return {"inputs": inputs, "targets": targets, "weights": weights,
            "token_types": np.zeros((seq_len,), np.int32), "input_mask": input_mask}


# ----------------------------------------------------------------------------- span corruption (T5)

def _span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a chunk of `length` tokens, as T5 computes them."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(1, int(round(num_noise / mean_span_length)))
    return num_noise, num_spans


def chunk_length(data_cfg, tokenizer) -> tuple[int, int]:
    """(chunk length, stride) of the packed stream for the objective."""
    seq_len = data_cfg.seq_len
    if data_cfg.objective == "causal_lm":
        return seq_len + 1, seq_len
    if data_cfg.objective == "mlm":
        return seq_len - 2, seq_len - 2  # room for CLS and SEP
    if data_cfg.objective == "span_corruption":
        n = span_corruption_chunk_length(
            seq_len, data_cfg.target_len or seq_len, data_cfg.noise_density,
            data_cfg.mean_span_length, len(tokenizer.sentinel_ids))
        return n, n
    if data_cfg.objective == "permutation_lm":
        return seq_len, seq_len  # targets are the inputs themselves: no shift, no specials
    raise ValueError(f"data.objective: no chunks for {data_cfg.objective!r}")


def span_corruption_chunk_length(inputs_len: int, targets_len: int, noise_density: float,
                                 mean_span_length: float, max_sentinels: int) -> int:
    """The longest raw chunk whose corrupted inputs fit S and targets fit T (with EOS)."""
    best = 2
    for length in range(2, 4 * (inputs_len + targets_len)):
        noise, spans = _span_counts(length, noise_density, mean_span_length)
        if spans > max_sentinels:
            break
        if length - noise + spans + 1 > inputs_len or noise + spans + 1 > targets_len:
            # Longer chunks only need more room, so the first misfit ends the search.
            break
        best = length
    return best


def _random_segmentation(total: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Splits `total` items into `num_segments` non-empty runs; returns the run lengths."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=num_segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [total]]))


def span_noise_mask(length: int, noise_density: float, mean_span_length: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Boolean [length] mask of noise tokens: alternating clean/noise runs, clean first."""
    num_noise, num_spans = _span_counts(length, noise_density, mean_span_length)
    num_spans = min(num_spans, num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    clean_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    runs = np.stack([clean_lengths, noise_lengths], axis=1).reshape(-1)
    is_noise = np.tile([False, True], num_spans)
    return np.repeat(is_noise, runs)


def _encoder_decoder_example(inputs: np.ndarray, targets: np.ndarray, inputs_len: int,
                             targets_len: int, tok) -> dict[str, np.ndarray]:
    """Pads inputs/targets and derives decoder_inputs (BOS + targets[:-1]) and weights."""
    targets = _pad_to(targets, targets_len, tok.pad_id)
    decoder_inputs = np.concatenate([[tok.bos_id], targets[:-1]]).astype(np.int32)
    return {"inputs": _pad_to(inputs, inputs_len, tok.pad_id),
            "decoder_inputs": decoder_inputs, "targets": targets,
            "weights": (targets != tok.pad_id).astype(np.float32)}


def span_corruption(tokens: np.ndarray, inputs_len: int, targets_len: int, tok,
                    noise_density: float, mean_span_length: float,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """T5 denoising: noise spans in the inputs become sentinels; targets list the spans.

    inputs  = clean tokens with span k replaced by sentinel_ids[k], then EOS       [S]
    targets = sentinel_0 span_0 sentinel_1 span_1 ... EOS                           [T]
    decoder_inputs = BOS + targets[:-1];  weights = 1.0 where targets is not PAD    [T]

    Args:
      tokens: the raw chunk; its length should be `span_corruption_chunk_length(...)` or
        less (the last chunk of a split), so both sides fit without truncation.
      inputs_len, targets_len: S and T.
      tok: the tokenizer (eos/bos/pad ids, sentinel_ids).
      noise_density, mean_span_length: fraction of tokens corrupted; mean span length.
      rng: the example's generator.
    """
    tokens = np.asarray(tokens, np.int32)
    if len(tokens) < 2:  # too short to corrupt: plain reconstruction target
        return _encoder_decoder_example(np.append(tokens, tok.eos_id), np.array([tok.eos_id]),
                                        inputs_len, targets_len, tok)
    noise = span_noise_mask(len(tokens), noise_density, mean_span_length, rng)
    span_starts = noise & ~np.concatenate([[False], noise[:-1]])
    span_index = np.cumsum(span_starts) - 1                     # which span each noise token is in
    sentinels = np.asarray(tok.sentinel_ids, np.int32)
    # Inputs: keep clean tokens; the first token of each span becomes its sentinel.
    inputs = np.where(span_starts, sentinels[np.maximum(span_index, 0)], tokens)[~noise | span_starts]
    # Targets: the sentinel before each span, then the span's tokens.
    parts = []
    for k, start in enumerate(np.flatnonzero(span_starts)):
        end = start
        while end < len(tokens) and noise[end]:
            end += 1
        parts.append(np.concatenate([[sentinels[k]], tokens[start:end]]))
    targets = np.concatenate(parts + [[tok.eos_id]]).astype(np.int32)
    inputs = np.append(inputs, tok.eos_id).astype(np.int32)
    return _encoder_decoder_example(inputs[:inputs_len], targets[:targets_len], inputs_len,
                                    targets_len, tok)


# ----------------------------------------------------------------------------- translation

def translation(source: np.ndarray, target: np.ndarray, inputs_len: int, targets_len: int,
                tok) -> dict[str, np.ndarray]:
    """Sequence-to-sequence: inputs = source + EOS [S], targets = target + EOS [T].

    Too-long sides are cut so that EOS is always kept; same keys as `span_corruption`.
    """
    source = np.append(np.asarray(source, np.int32)[:inputs_len - 1], tok.eos_id)
    target = np.append(np.asarray(target, np.int32)[:targets_len - 1], tok.eos_id)
    return _encoder_decoder_example(source, target, inputs_len, targets_len, tok)


# ----------------------------------------------------------------------------- permutation LM (XLNet)

def permutation_lm(tokens: np.ndarray, seq_len: int, pad_id: int, perm_k: float,
                   rng: np.random.Generator | None = None,
                   order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """XLNet permutation LM with partial prediction on one chunk of up to T tokens.

    A factorization order z (a permutation of the T positions) is sampled uniformly over
    the real tokens; padding positions come after every real one, so no real position
    ever sees padding. Only the last ceil(n / K) real positions of the order are predicted
    (n real tokens; K = `perm_k`, 6 in the XLNet paper): the rest serve as context only.

    Args:
      tokens: [<= T] ids (a packed chunk; the last chunk of a split may be short).
      seq_len: T.
      pad_id: the padding id.
      perm_k: K >= 1; K = 1 predicts every position.
      rng: the example's generator (draws the order when `order` is not given).
      order: an explicit factorization order [T] (positions in generation order);
        must be a permutation of 0..T-1.

    Returns:
      inputs [T] ids; targets [T] (= inputs: the query stream never sees its own token);
      weights [T] float32, 1.0 on the predicted positions; perm_ranks [T] int32, the step
      of each position in the order (ranks[z[s]] = s); token_types [T] zeros (one segment).

    Raises:
      ValueError: perm_k < 1 (names `data.perm_k`), or `order` is not a permutation.
    """
    if not perm_k >= 1:
        raise ValueError(f"data.perm_k: must be >= 1 (K = 1 predicts every position), "
                         f"got {perm_k!r}")
    tokens = np.asarray(tokens, np.int32)[:seq_len]
    num_real = len(tokens)
    inputs = _pad_to(tokens, seq_len, pad_id)
    if order is None:
        if rng is None:
            raise ValueError("permutation_lm: give either rng or an explicit order")
        order = np.concatenate([rng.permutation(num_real), np.arange(num_real, seq_len)])
    order = np.asarray(order)
    if (order.shape != (seq_len,) or not np.issubdtype(order.dtype, np.integer)
            or not np.array_equal(np.sort(order), np.arange(seq_len))):
        raise ValueError(f"permutation_lm: the factorization order must be a permutation of "
                         f"0..{seq_len - 1}; got {order.tolist()[:16]}"
                         f"{' ...' if order.size > 16 else ''}")
    ranks = np.empty((seq_len,), np.int32)
    ranks[order] = np.arange(seq_len, dtype=np.int32)
    num_predict = int(np.ceil(num_real / perm_k))  # ceil(n / K)
    predicted = (ranks >= num_real - num_predict) & (ranks < num_real)
    return {"inputs": inputs, "targets": inputs.copy(),
            "weights": predicted.astype(np.float32), "perm_ranks": ranks,
            "token_types": np.zeros((seq_len,), np.int32)}


def empty_example(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An all-padding example shaped like `example`, all weights zero (fills a last batch)."""
    return {k: np.zeros_like(v) for k, v in example.items()}
