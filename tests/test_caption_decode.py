"""Caption decoding: the searches against brute-force enumeration on a lookup-table model,
and the Captioner's decoding against its own teacher-forced logits."""
import itertools

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling.captioning.decode import (beam_search, beam_search_loop, caption_ids,
                                       gnmt_penalty, greedy, greedy_search)
from scaling.models import build_model
from scaling.spec import ModelSpec

PAD, BOS, EOS, V = 0, 1, 2, 6
WORDS = (EOS, 3, 4, 5)  # what may be generated: pad and BOS never are


def _caption_len(row):
    """Tokens up to and including the first EOS (all of them without one)."""
    hits = np.flatnonzero(np.asarray(row) == EOS)
    return int(hits[0]) + 1 if hits.size else len(row)


def _ends_in_pad(ids):
    for row in ids:
        assert (row[_caption_len(row):] == PAD).all(), row


# --- the searches on a lookup-table model ------------------------------------------------
# log P(token at t) depends on the image, t and the last two tokens of the prefix (BOS
# standing in before the start): cheap, yet enough that the best caption is not greedy's.
NB, MAX_LEN = 6, 4


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(1)
    logits = 2.0 * rng.normal(size=(NB, MAX_LEN, V, V, V))
    logits[..., [PAD, BOS]] = -np.inf
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)  # log-softmax


def _table_log_probs(table):
    table = jnp.asarray(table, jnp.float32)

    def log_probs(prefix, t):  # prefix [B, K, L]
        last = jax.lax.dynamic_index_in_dim(prefix, t, axis=2, keepdims=False)
        prev = jax.lax.dynamic_index_in_dim(prefix, jnp.maximum(t - 1, 0), 2, keepdims=False)
        image = jnp.arange(prefix.shape[0])[:, None]
        return table[image, t, prev, last]  # [B, K, V]
    return log_probs


def _table_logp(table, image, caption):
    """log P(caption | image) under the table, computed directly from its definition."""
    context = [BOS] + list(caption)
    return sum(table[image, t, context[max(t - 1, 0)], context[t], tok]
               for t, tok in enumerate(caption))


def _every_caption():
    """All captions of at most MAX_LEN tokens (EOS counted) made of WORDS."""
    out = set()
    for seq in itertools.product(WORDS, repeat=MAX_LEN):
        out.add(seq[:_caption_len(seq)])
    return sorted(out)


def _search(table, beam_size, alpha):
    kw = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=MAX_LEN)
    if beam_size == 0:
        return np.asarray(jax.jit(lambda: greedy_search(_table_log_probs(table), NB, **kw))())
    ids, scores = jax.jit(lambda a: beam_search_loop(_table_log_probs(table), NB,
                                                     beam_size=beam_size, alpha=a, **kw))(alpha)
    return np.asarray(ids), np.asarray(scores)


def test_greedy_search_takes_the_argmax_at_every_step(table):
    ids = _search(table, 0, 0.0)
    _ends_in_pad(ids)
    for i, row in enumerate(ids):
        context = [BOS] + list(row)
        for t in range(_caption_len(row)):
            assert row[t] == np.argmax(table[i, t, context[max(t - 1, 0)], context[t]])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_a_full_beam_is_exact_and_a_beam_of_one_is_greedy(table, alpha):
    """4^3 beams hold every caption shorter than MAX_LEN, so nothing is pruned before the
    last step: the beam's best is the best of all 1 + 3 + 9 + 27 + 81 captions."""
    captions = _every_caption()
    assert len(captions) == 1 + 3 + 9 + 27 + 81
    ids, scores = _search(table, len(WORDS) ** (MAX_LEN - 1), alpha)
    _ends_in_pad(ids)
    greedy_ids = _search(table, 0, 0.0)
    beaten = 0
    for i in range(NB):
        penalised = [_table_logp(table, i, c) / ((5 + len(c)) / 6) ** alpha for c in captions]
        best = captions[int(np.argmax(penalised))]
        np.testing.assert_array_equal(ids[i], list(best) + [PAD] * (MAX_LEN - len(best)))
        np.testing.assert_allclose(scores[i], max(penalised), rtol=1e-5)
        g = greedy_ids[i][:_caption_len(greedy_ids[i])]
        beaten += max(penalised) > penalised[captions.index(tuple(g))] + 1e-6
    assert beaten > 0  # the search matters: greedy misses the best caption somewhere

    one_ids, one_scores = _search(table, 1, alpha)
    np.testing.assert_array_equal(one_ids, greedy_ids)
    for i, row in enumerate(one_ids):
        n = _caption_len(row)
        np.testing.assert_allclose(one_scores[i], _table_logp(table, i, row[:n])
                                   / ((5 + n) / 6) ** alpha, rtol=1e-5)


# --- the Captioner ------------------------------------------------------------------------
B = 3


@pytest.fixture(scope="module")
def tiny():
    """A random captioner with a 6-token vocabulary and its jitted teacher-forced forward."""
    spec = ModelSpec(family="captioning", vocab_size=V, num_layers=1, num_decoder_layers=1,
                     width=16, num_heads=2, mlp_dim=32, max_len=8, kernels="reference",
                     image_size=8, backbone_widths=(4,), backbone_depths=(1,),
                     backbone_groups=2)
    model = build_model(spec)
    images = np.random.default_rng(0).normal(size=(B, 8, 8, 3)).astype(np.float32)
    # Random parameters of the right shapes: no init to compile, and sharper than init's.
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            {"images": images, "decoder_inputs": np.zeros((B, 8), np.int32)})
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda x: rng.normal(0, 0.5, x.shape).astype(np.float32),
                          flax.linen.unbox(shapes["params"]))
    return model, params, images, jax.jit(model.apply)


def _teacher_forced_log_probs(tiny, captions):
    """log P(token t | BOS, caption[:t], image) [B, T, V] over the tokens that may be generated."""
    model, params, images, apply = tiny
    inputs = np.concatenate([np.full((len(captions), 1), BOS), captions[:, :-1]], 1)
    logits = np.asarray(apply({"params": params}, {"images": images,
                                                   "decoder_inputs": inputs.astype(np.int32)}),
                        np.float64)[..., :V]
    logits[..., [PAD, BOS]] = -np.inf
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def test_greedy_is_the_argmax_of_teacher_forcing(tiny):
    model, params, images, _ = tiny
    ids = greedy(model, params, images, bos_id=BOS, eos_id=EOS, max_len=8)
    assert ids.shape == (B, 8) and ids.dtype == np.int32
    _ends_in_pad(ids)
    argmax = _teacher_forced_log_probs(tiny, ids).argmax(-1)
    for row, want in zip(ids, argmax):
        n = _caption_len(row)
        np.testing.assert_array_equal(row[:n], want[:n])


def test_beam_scores_are_the_penalised_log_probs_of_its_captions(tiny):
    model, params, images, _ = tiny
    ids, scores = beam_search(model, params, images, bos_id=BOS, eos_id=EOS, max_len=8,
                              beam_size=3, length_penalty=0.6)
    _ends_in_pad(ids)
    lp = _teacher_forced_log_probs(tiny, ids)
    for row, rows, score in zip(ids, lp, scores):
        n = _caption_len(row)
        want = sum(rows[i, row[i]] for i in range(n)) / gnmt_penalty(n, 0.6)
        np.testing.assert_allclose(score, want, rtol=1e-5)


def test_bad_arguments_are_one_line_errors(tiny):
    model, params, images, _ = tiny
    with pytest.raises(ValueError, match="model.max_len 8"):
        greedy(model, params, images, bos_id=BOS, eos_id=EOS, max_len=9)
    with pytest.raises(ValueError, match="eos_id=6"):
        beam_search(model, params, images, bos_id=BOS, eos_id=V, max_len=4)
    with pytest.raises(ValueError, match="beam_size=0"):
        beam_search(model, params, images, bos_id=BOS, eos_id=EOS, max_len=4, beam_size=0)


def test_caption_ids_cut_at_eos_and_drop_pads():
    assert caption_ids([4, 5, EOS, 3, PAD], EOS, PAD) == [4, 5]
    assert caption_ids([4, PAD, 5], EOS, PAD) == [4, 5]
    assert caption_ids([EOS, 4], EOS, PAD) == []
