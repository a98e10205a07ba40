"""Unit tests of the tokenizer and the objectives (pure numpy, no datasets)."""
import numpy as np
import pytest

from scaling.data import objectives
from scaling.data.tokenizer import BYTE_VOCAB_SIZE, ByteTokenizer

TOK = ByteTokenizer()


def test_byte_tokenizer_ids_and_round_trip():
    text = "héllo, wörld → 🙂\n"
    ids = TOK.encode(text)
    assert ids.dtype == np.int32
    assert list(ids) == [b + 5 for b in text.encode("utf-8")]  # byte b is id b + 5
    assert TOK.decode(ids) == text
    # Specials and sentinels are skipped by decode.
    assert TOK.decode([TOK.bos_id, *ids, TOK.eos_id, TOK.sentinel_ids[0], TOK.pad_id]) == text
    assert (TOK.pad_id, TOK.eos_id, TOK.bos_id, TOK.sep_id, TOK.mask_id) == (0, 1, 2, 3, 4)
    assert TOK.vocab_size == BYTE_VOCAB_SIZE == 384
    assert TOK.sentinel_ids == list(range(261, 384))
    assert set(TOK.special_ids) == set(range(5)) | set(range(261, 384))


# ----------------------------------------------------------------------------- causal LM

def test_causal_lm_shift_and_padding():
    window = np.arange(10, 20)                       # 10 tokens: a short, final window
    ex = objectives.causal_lm(window, seq_len=12, pad_id=0)
    assert ex["inputs"].shape == ex["targets"].shape == ex["weights"].shape == (12,)
    np.testing.assert_array_equal(ex["inputs"][:9], window[:-1])
    np.testing.assert_array_equal(ex["targets"][:9], window[1:])
    np.testing.assert_array_equal(ex["weights"], [1] * 9 + [0] * 3)
    full = objectives.causal_lm(np.arange(13), seq_len=12, pad_id=0)
    np.testing.assert_array_equal(full["targets"][:-1], full["inputs"][1:])
    assert full["weights"].sum() == 12


# ----------------------------------------------------------------------------- MLM

def _mlm_batch(num, seq_len=128, seed=0, mask_rate=0.15):
    rng = np.random.default_rng(1234)
    examples = []
    for i in range(num):
        tokens = rng.integers(5, 261, size=rng.integers(20, seq_len - 2)).astype(np.int32)
        tokens[rng.random(len(tokens)) < 0.05] = TOK.eos_id  # document boundaries: specials
        examples.append((tokens, objectives.mlm(tokens, seq_len, TOK, mask_rate,
                                                np.random.default_rng([seed, i]))))
    return examples


def test_mlm_layout_and_statistics():
    examples = _mlm_batch(2000)
    selected = masked = randomized = kept = candidates = 0
    for tokens, ex in examples:
        n = len(tokens)
        # Layout: [CLS] tokens [SEP] PAD..., independent of the masking.
        np.testing.assert_array_equal(ex["targets"][:n + 2], [TOK.bos_id, *tokens, TOK.sep_id])
        assert (ex["targets"][n + 2:] == TOK.pad_id).all()
        np.testing.assert_array_equal(ex["input_mask"], np.arange(128) < n + 2)
        assert (ex["token_types"] == 0).all()
        sel = ex["weights"] == 1.0
        # Specials (CLS, SEP, PAD, EOS) are never selected, nor changed.
        assert not np.isin(ex["targets"][sel], TOK.special_ids).any()
        unselected_same = ex["inputs"][~sel] == ex["targets"][~sel]
        assert unselected_same.all()
        candidates += int((~np.isin(tokens, TOK.special_ids)).sum())
        selected += int(sel.sum())
        masked += int((ex["inputs"][sel] == TOK.mask_id).sum())
        changed = (ex["inputs"][sel] != ex["targets"][sel]) & (ex["inputs"][sel] != TOK.mask_id)
        randomized += int(changed.sum())
        assert not np.isin(ex["inputs"][sel][changed], TOK.special_ids).any()
        kept += int((ex["inputs"][sel] == ex["targets"][sel]).sum())
    assert selected / candidates == pytest.approx(0.15, abs=0.005)
    assert masked / selected == pytest.approx(0.8, abs=0.015)
    # A random replacement equals the original 1 time in 256: it then counts as kept.
    assert randomized / selected == pytest.approx(0.1 * 255 / 256, abs=0.012)
    assert kept / selected == pytest.approx(0.1 + 0.1 / 256, abs=0.012)


def test_mlm_same_rng_same_mask_and_other_rng_differs():
    tokens = np.arange(5, 105, dtype=np.int32)
    a = objectives.mlm(tokens, 128, TOK, 0.15, np.random.default_rng([0, 7]))
    b = objectives.mlm(tokens, 128, TOK, 0.15, np.random.default_rng([0, 7]))
    c = objectives.mlm(tokens, 128, TOK, 0.15, np.random.default_rng([0, 7, 1]))
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(a["weights"], c["weights"])


# ----------------------------------------------------------------------------- span corruption

def _reconstruct(inputs, targets, tok):
    """Independent inverse: put each sentinel's span from `targets` back into `inputs`."""
    sentinels = set(tok.sentinel_ids)
    spans, current = {}, None
    for t in targets:
        if t in (tok.eos_id, tok.pad_id):
            break
        if t in sentinels:
            current = int(t)
            spans[current] = []
        else:
            spans[current].append(int(t))
    out = []
    for t in inputs:
        if t in (tok.eos_id, tok.pad_id):
            break
        out.extend(spans[int(t)] if t in sentinels else [int(t)])
    return out


@pytest.mark.parametrize("seq_len,target_len", [(128, 128), (64, 32), (32, 16)])
def test_span_corruption_reconstructs_the_original(seq_len, target_len):
    length = objectives.span_corruption_chunk_length(seq_len, target_len, 0.15, 3.0,
                                                     len(TOK.sentinel_ids))
    rng = np.random.default_rng(0)
    noise_total = token_total = 0
    for i in range(200):
        n = length if i % 4 else int(rng.integers(1, length + 1))  # some short last chunks
        tokens = rng.integers(5, 261, size=n).astype(np.int32)
        ex = objectives.span_corruption(tokens, seq_len, target_len, TOK, 0.15, 3.0,
                                        np.random.default_rng([0, i]))
        assert ex["inputs"].shape == (seq_len,) and ex["targets"].shape == (target_len,)
        assert _reconstruct(ex["inputs"], ex["targets"], TOK) == tokens.tolist()
        # Both sides end in EOS (nothing was cut off).
        assert TOK.eos_id in ex["inputs"] and TOK.eos_id in ex["targets"]
        np.testing.assert_array_equal(ex["decoder_inputs"],
                                      np.concatenate([[TOK.bos_id], ex["targets"][:-1]]))
        np.testing.assert_array_equal(ex["weights"], ex["targets"] != TOK.pad_id)
        if n == length:
            is_sentinel = np.isin(ex["targets"], TOK.sentinel_ids)
            noise_total += int((ex["weights"] == 1).sum() - is_sentinel.sum() - 1)
            token_total += n
    assert noise_total / token_total == pytest.approx(0.15, abs=0.02)


def test_span_chunk_length_fills_the_inputs():
    length = objectives.span_corruption_chunk_length(128, 128, 0.15, 3.0, 123)
    ex = objectives.span_corruption(np.full(length, 50, np.int32), 128, 128, TOK, 0.15, 3.0,
                                    np.random.default_rng(0))
    assert (ex["inputs"] != TOK.pad_id).sum() >= 126  # nearly no padding wasted


# ----------------------------------------------------------------------------- translation

def test_translation_example():
    src, tgt = TOK.encode("guten Morgen"), TOK.encode("good morning")
    ex = objectives.translation(src, tgt, 16, 8, TOK)
    np.testing.assert_array_equal(ex["inputs"][:13], [*src, TOK.eos_id])
    assert (ex["inputs"][13:] == 0).all()
    np.testing.assert_array_equal(ex["targets"], [*tgt[:7], TOK.eos_id])  # cut, EOS kept
    np.testing.assert_array_equal(ex["decoder_inputs"], [TOK.bos_id, *tgt[:7]])
    assert ex["weights"].sum() == 8
