"""Greedy and top-k sampling from a trained decoder-only model.

No KV cache: each new token re-runs the model over a fixed [1, L] buffer, so one compiled
program serves every position. That is quadratic in L, which is fine for the tiny models a
CPU trains and keeps the model code free of decoding state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scaling.models.embeddings import PAD_ID


def generate(model, params, prompt: np.ndarray, *, max_len: int, max_new_tokens: int,
             rng: jax.Array, temperature: float = 1.0, top_k: int = 0,
             greedy: bool = False) -> np.ndarray:
    """Continue `prompt` (1-D token ids) by up to `max_new_tokens` tokens.

    Args:
      model, params: a decoder-only Linen model and its parameters.
      max_len: the model's context (learned positions); generation stops there.
      temperature: logits are divided by it before sampling.
      top_k: sample among the k most likely tokens (0 = the whole vocabulary).
      greedy: take the most likely token every time (ignores temperature and top_k).

    Returns:
      The generated ids (without the prompt).
    """
    prompt = np.asarray(prompt, np.int32)[-max_len + 1:]
    if prompt.size == 0:
        raise ValueError("prompt: needs at least one token")
    start = len(prompt)
    end = min(max_len, start + max_new_tokens)
    buf = jnp.full((1, max_len), PAD_ID, jnp.int32).at[0, :start].set(prompt)

    def step(pos, carry):
        buf, rng = carry
        logits = model.apply({"params": params}, {"inputs": buf})[0, pos - 1]
        logits = logits.astype(jnp.float32)
        rng, key = jax.random.split(rng)
        if greedy:
            token = jnp.argmax(logits)
        else:
            logits = logits / max(temperature, 1e-6)
            if top_k:
                kth = jax.lax.top_k(logits, top_k)[0][-1]
                logits = jnp.where(logits < kth, -jnp.inf, logits)
            token = jax.random.categorical(key, logits)
        return buf.at[0, pos].set(token.astype(jnp.int32)), rng

    buf, _ = jax.jit(lambda b, r: jax.lax.fori_loop(start, end, step, (b, r)))(buf, rng)
    return np.asarray(buf[0, start:end])
