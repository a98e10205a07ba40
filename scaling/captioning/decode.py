"""Greedy and beam-search captions from a Captioner.

The images are encoded once (Captioner.encode_images); each step then reruns the decoder
(Captioner.decode_tokens) over a fixed-length buffer of the tokens so far and reads the
logits at the current position. There is no KV cache: captions are short, and one compiled
program serves every step. Each search is one jitted lax.fori_loop.

Returned ids have no BOS; a caption ends at its first EOS (kept) and every id after it is
pad_id. Pad and BOS are never generated (they are no caption's target), so a pad id always
means "after the end"; only the first spec.vocab_size logits count (the rest are padding).

Beam search keeps `beam_size` hypotheses; a finished one (ended by EOS) stays among them
frozen, extended by pad at no cost, and competes with the live ones at every step, all ranked
by the GNMT length-penalised score log P(y) / ((5 + |y|) / 6)^alpha (|y| counts the EOS; a
caption that reaches max_len without EOS has |y| = max_len). With beam_size 1 this is greedy
decoding; with a beam that holds every caption one token shorter than max_len it is exact.

The searches themselves (`greedy_search`, `beam_search_loop`) take any `log_probs(prefix, t)`
function, so they are tested against brute-force enumeration on small hand-made models.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from scaling.models.captioning import Captioner

# log_probs(prefix [B, K, L] int32, t) -> [B, K, V] float32: log P(token at t | prefix[..., :t]),
# where prefix[..., 0] is BOS and prefix[..., 1:t + 1] the tokens chosen so far.
LogProbs = Callable[[jax.Array, jax.Array], jax.Array]


def gnmt_penalty(length, alpha):
    """GNMT's ((5 + length) / 6)^alpha (Wu et al. 2016); alpha 0 leaves log-probs as they are."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def greedy_search(log_probs: LogProbs, batch_size: int, *, bos_id: int, eos_id: int,
                  pad_id: int, max_len: int) -> jax.Array:
    """The most likely token at every step -> int32 [B, max_len] (traceable, no jit here)."""
    # buf[:, 0, 0] is BOS, buf[:, 0, t + 1] the token chosen at step t; the caption is buf[..., 1:].
    buf = jnp.full((batch_size, 1, max_len + 1), pad_id, jnp.int32).at[..., 0].set(bos_id)

    def step(t, carry):
        buf, done = carry
        token = jnp.argmax(log_probs(buf[..., :max_len], t)[:, 0], axis=-1)
        token = jnp.where(done, pad_id, token).astype(jnp.int32)
        buf = jax.lax.dynamic_update_index_in_dim(buf, token[:, None], t + 1, axis=2)
        return buf, done | (token == eos_id)

    buf, _ = jax.lax.fori_loop(0, max_len, step, (buf, jnp.zeros((batch_size,), bool)))
    return buf[:, 0, 1:]


def beam_search_loop(log_probs: LogProbs, batch_size: int, *, bos_id: int, eos_id: int,
                     pad_id: int, max_len: int, beam_size: int,
                     alpha) -> tuple[jax.Array, jax.Array]:
    """Beam search (module docstring) -> (ids int32 [B, max_len], scores float32 [B])."""
    b, k = batch_size, beam_size
    seqs = jnp.full((b, k, max_len + 1), pad_id, jnp.int32).at[..., 0].set(bos_id)
    # Only beam 0 is live at first, so the K beams do not start as K copies of one.
    logp = jnp.full((b, k), -jnp.inf, jnp.float32).at[:, 0].set(0.0)
    done = jnp.zeros((b, k), bool)
    length = jnp.zeros((b, k), jnp.int32)

    def step(t, carry):
        seqs, logp, done, length = carry
        lp = log_probs(seqs[..., :max_len], t)  # [B, K, V]
        v = lp.shape[-1]
        # A finished hypothesis has one continuation, pad, at no cost.
        frozen = jnp.where(jnp.arange(v) == pad_id, 0.0, -jnp.inf)
        cand = logp[..., None] + jnp.where(done[..., None], frozen, lp)  # [B, K, V]
        cand_len = jnp.where(done, length, t + 1)[..., None]
        score = (cand / gnmt_penalty(cand_len, alpha)).reshape(b, k * v)
        _, best = jax.lax.top_k(score, k)  # [B, K] indices into the K·V candidates
        beam, token = best // v, (best % v).astype(jnp.int32)
        seqs = jnp.take_along_axis(seqs, beam[..., None], axis=1)
        seqs = jax.lax.dynamic_update_index_in_dim(seqs, token, t + 1, axis=2)
        logp = jnp.take_along_axis(cand.reshape(b, k * v), best, axis=1)
        was_done = jnp.take_along_axis(done, beam, axis=1)
        length = jnp.where(was_done, jnp.take_along_axis(length, beam, axis=1), t + 1)
        return seqs, logp, was_done | (token == eos_id), length

    seqs, logp, _, length = jax.lax.fori_loop(0, max_len, step, (seqs, logp, done, length))
    score = logp / gnmt_penalty(length, alpha)  # unfinished ones have |y| = max_len
    best = jnp.argmax(score, axis=1)
    ids = jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0, 1:]
    return ids, jnp.take_along_axis(score, best[:, None], axis=1)[:, 0]


def _check(model, bos_id: int, eos_id: int, pad_id: int, max_len: int, beam_size: int = 1):
    """One-line errors before anything compiles."""
    spec = model.spec
    if max_len < 1:
        raise ValueError(f"max_len={max_len}: a caption needs at least one token")
    if max_len > spec.max_positions:
        raise ValueError(f"max_len={max_len} is longer than the decoder's positions "
                         f"(model.max_len {spec.max_positions}); use at most that")
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if not 0 <= value < spec.vocab_size:
            raise ValueError(f"{name}={value} is outside the vocabulary "
                             f"(model.vocab_size {spec.vocab_size})")
    if eos_id in (bos_id, pad_id):
        raise ValueError(f"eos_id={eos_id} must differ from bos_id and pad_id")
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: use at least 1")


def _model_log_probs(model, params, memory, bos_id: int, pad_id: int) -> LogProbs:
    """The Captioner as a LogProbs; memory [B·K, Y·X, D]: row i·K + j is beam j of image i."""
    def log_probs(prefix, t):
        b, k, length = prefix.shape
        logits = model.apply({"params": params}, memory, prefix.reshape(b * k, length),
                             method=Captioner.decode_tokens)
        logits = jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False)
        logits = logits[:, :model.spec.vocab_size].astype(jnp.float32)
        never = (jnp.arange(logits.shape[-1]) == pad_id) | (jnp.arange(logits.shape[-1]) == bos_id)
        logits = jnp.where(never, -jnp.inf, logits)
        return jax.nn.log_softmax(logits).reshape(b, k, -1)
    return log_probs


@functools.lru_cache(maxsize=16)
def _compiled(model, search: str, bos_id: int, eos_id: int, pad_id: int, max_len: int,
              beam_size: int):
    """One jitted program per (model, search, ids, max_len, beam): images -> captions."""
    def run(params, images, alpha):
        memory = model.apply({"params": params}, images, method=Captioner.encode_images)
        memory = jnp.repeat(memory, beam_size, axis=0)  # once, not at every step
        log_probs = _model_log_probs(model, params, memory, bos_id, pad_id)
        kw = dict(bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, max_len=max_len)
        if search == "greedy":
            return greedy_search(log_probs, images.shape[0], **kw)
        return beam_search_loop(log_probs, images.shape[0], beam_size=beam_size, alpha=alpha,
                                **kw)
    return jax.jit(run)


def greedy(model, params, images, *, bos_id: int, eos_id: int, pad_id: int = 0,
           max_len: int) -> np.ndarray:
    """The most likely token at every step.

    Args:
      model: a Captioner (scaling.models.build_model of a captioning spec).
      params: its parameters (the 'params' collection).
      images: [B, S, S, 3] float32, preprocessed as in training.
      max_len: tokens to generate at most (EOS included); at most the decoder's positions.

    Returns:
      int32 [B, max_len]: the captions, no BOS, pad_id after the first EOS.
    """
    _check(model, bos_id, eos_id, pad_id, max_len)
    run = _compiled(model, "greedy", bos_id, eos_id, pad_id, max_len, 1)
    return np.asarray(run(params, jnp.asarray(images, jnp.float32), 0.0))


def beam_search(model, params, images, *, bos_id: int, eos_id: int, pad_id: int = 0,
                max_len: int, beam_size: int = 4,
                length_penalty: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """The best caption found by a beam of `beam_size` hypotheses (see the module docstring).

    Args:
      model, params, images, max_len: as for `greedy`.
      beam_size: hypotheses kept per image (1 = greedy).
      length_penalty: GNMT's alpha; 0 ranks by log-probability alone, larger favours longer.

    Returns:
      (ids int32 [B, max_len] as for greedy, scores float32 [B]: log P / ((5 + |y|) / 6)^alpha).
    """
    _check(model, bos_id, eos_id, pad_id, max_len, beam_size)
    run = _compiled(model, "beam", bos_id, eos_id, pad_id, max_len, beam_size)
    ids, scores = run(params, jnp.asarray(images, jnp.float32), jnp.float32(length_penalty))
    return np.asarray(ids), np.asarray(scores)


def caption_ids(row, eos_id: int, pad_id: int = 0) -> list[int]:
    """One decoded row -> the caption's ids: up to (not including) the first EOS, no pads."""
    out = []
    for i in np.asarray(row).reshape(-1).tolist():
        if i == eos_id:
            break
        if i != pad_id:
            out.append(i)
    return out
