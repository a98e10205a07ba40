"""Tests of the builtin corpus, TFDS sources and the grain pipeline, on a tiny corpus."""
import math
import os
from collections import Counter

import numpy as np
import pytest

from scaling import data
from scaling.batch_spec import batch_spec
from scaling.config import base_config
from scaling.data import builtin, pipeline, sources

DOCS = {f"doc{i:02d}.txt": (f"Document {i}. " + "The quick brown fox jumps over the lazy dog. "
                            * (i % 5 + 1) + "¿Qué tal?\n" * (i % 3)) for i in range(24)}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name, text in DOCS.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture
def config(corpus_dir, data_dir):
    c = base_config()
    c.data.corpus = str(corpus_dir)
    c.data.data_dir = str(data_dir)
    c.data.seq_len = 16
    c.data.eval_fraction = 0.25
    c.train.batch_size = 8
    return c


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _expected_stream(config, split):
    """The split's documents, read straight from the files, as bytes+5 joined by EOS."""
    records = sources._builtin_sources(config.data.corpus, config.data.eval_fraction,
                                       config.data.data_dir)[split]
    ids = []
    for i in range(len(records)):
        path = records[i]["path"].decode()
        with open(path, "rb") as f:
            ids.extend(b + 5 for b in f.read())
        ids.append(1)
    return ids


# ----------------------------------------------------------------------------- builtin corpus

def test_corpus_prepared_once_and_split_by_document(config, monkeypatch):
    sources._builtin_sources.cache_clear()
    srcs = builtin.load_builtin(config.data.corpus, 0.25, config.data.data_dir)
    train = {srcs["train"][i]["path"].decode() for i in range(len(srcs["train"]))}
    val = {srcs["validation"][i]["path"].decode() for i in range(len(srcs["validation"]))}
    assert not train & val
    assert train | val == {os.path.join(config.data.corpus, n) for n in DOCS}
    assert len(val) == 6  # 25% of 24 documents

    # A second load reuses the prepared files: no example is generated again.
    def fail(*args, **kwargs):
        raise AssertionError("re-prepared a prepared corpus")
    monkeypatch.setattr(builtin.ScalingBuiltinCorpus, "_split_generators", fail)
    again = builtin.load_builtin(config.data.corpus, 0.25, config.data.data_dir)
    assert len(again["train"]) == len(train)


def test_two_corpora_do_not_collide(config, tmp_path):
    (tmp_path / "other.txt").write_text("another corpus entirely\n" * 10)
    a = builtin.make_builder(config.data.corpus, 0.25, config.data.data_dir)
    b = builtin.make_builder(str(tmp_path / "*.txt"), 0.25, config.data.data_dir)
    assert a.builder_config.name != b.builder_config.name
    assert a.data_dir != b.data_dir
    srcs = builtin.load_builtin(str(tmp_path / "*.txt"), 0.25, config.data.data_dir)
    # One file: served to both splits.
    assert srcs["train"][0]["text"] == srcs["validation"][0]["text"] == b"another corpus entirely\n" * 10


def test_stdlib_default_corpus(tmp_path):
    c = base_config()
    c.data.data_dir = str(tmp_path)
    files = builtin.resolve_corpus("")
    assert len(files) > 100 and all(f.endswith(".py") and "site-packages" not in f for f in files)
    batch = next(data.make_pipeline(c, "train"))
    assert batch["inputs"].shape == (16, 128)
    text = data.make_tokenizer(c.data).decode(batch["inputs"][0])
    assert len(text) > 50


# ----------------------------------------------------------------------------- causal LM pipeline

def test_causal_lm_batches_cover_the_split_exactly_once(config):
    it = data.make_pipeline(config, "validation", num_epochs=1)
    batches = list(it)
    assert all(b["inputs"].shape == (8, 16) for b in batches)
    inputs = np.concatenate([b["inputs"] for b in batches])
    targets = np.concatenate([b["targets"] for b in batches])
    weights = np.concatenate([b["weights"] for b in batches])
    np.testing.assert_array_equal(targets[:, :-1], inputs[:, 1:])  # shifted by one
    expected = _expected_stream(config, "validation")
    # Validation keeps order: the weighted targets, row by row, are the stream minus its first token.
    assert targets[weights == 1].tolist() == expected[1:]
    assert inputs[0, 0] == expected[0]


def test_same_seed_same_batches_other_seed_other_order(config):
    a = _take(data.make_pipeline(config, "train"), 4)
    b = _take(data.make_pipeline(config, "train"), 4)
    _assert_batches_equal(a, b)
    c = _take(data.make_pipeline(config, "train", seed=1), 4)
    assert not np.array_equal(a[0]["inputs"], c[0]["inputs"])
    # Same examples in another order: epoch 0 of both covers the same windows.
    n = len(pipeline.make_chunks(config.data, "train", data.make_tokenizer(config.data)))
    rows = lambda it: {r.tobytes() for b in _take(it, math.ceil(n / 8)) for r in b["inputs"]}
    assert rows(data.make_pipeline(config, "train", num_epochs=1)) == \
        rows(data.make_pipeline(config, "train", num_epochs=1, seed=1))


def test_epochs_are_reshuffled(config):
    n = len(pipeline.make_chunks(config.data, "train", data.make_tokenizer(config.data)))
    order = pipeline.GlobalOrder(n, 8, seed=0, shuffle=True, num_epochs=None)
    e0 = [order[i] for i in range(n)]
    e1 = [order[i] for i in range(n, 2 * n)]
    assert sorted(i for i, _ in e0) == list(range(n)) == sorted(i for i, _ in e1)
    assert [i for i, _ in e0] != [i for i, _ in e1]
    assert {e for _, e in e0} == {0} and {e for _, e in e1} == {1}


@pytest.mark.parametrize("objective", ["causal_lm", "mlm", "span_corruption"])
def test_hosts_see_disjoint_halves_of_the_global_batch(config, objective):
    config.data.objective = objective
    one = _take(data.make_pipeline(config, "train"), 3)
    h0 = _take(data.make_pipeline(config, "train", process_index=0, process_count=2), 3)
    h1 = _take(data.make_pipeline(config, "train", process_index=1, process_count=2), 3)
    for g, a, b in zip(one, h0, h1):
        for k in g:
            assert a[k].shape[0] == b[k].shape[0] == 4
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k], err_msg=k)
        assert not np.array_equal(a["inputs"], b["inputs"])


def test_iterator_state_round_trip(config):
    it = data.make_pipeline(config, "train")
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 4)
    fresh = data.make_pipeline(config, "train")
    fresh.set_state(state)
    _assert_batches_equal(_take(fresh, 4), expected)


# ----------------------------------------------------------------------------- other objectives

def test_mlm_static_masks_repeat_across_epochs_dynamic_do_not(config):
    config.data.objective = "mlm"
    config.data.shuffle = False
    n = len(pipeline.make_chunks(config.data, "train", data.make_tokenizer(config.data)))

    def two_epochs():
        rows = [b for b in data.make_pipeline(config, "train", num_epochs=2)]
        inputs = np.concatenate([b["inputs"] for b in rows])
        targets = np.concatenate([b["targets"] for b in rows])
        np.testing.assert_array_equal(targets[:n], targets[n:2 * n])  # same examples
        return inputs[:n], inputs[n:2 * n]

    config.data.dynamic_masking = False
    a, b = two_epochs()
    np.testing.assert_array_equal(a, b)
    config.data.dynamic_masking = True
    a, b = two_epochs()
    assert (a != b).any(axis=1).mean() > 0.5


def test_span_corruption_batch_keys(config):
    config.data.objective = "span_corruption"
    config.data.target_len = 8
    b = next(data.make_pipeline(config, "train"))
    assert b["inputs"].shape == (8, 16)
    assert {k: b[k].shape for k in ("decoder_inputs", "targets", "weights")} == \
        {"decoder_inputs": (8, 8), "targets": (8, 8), "weights": (8, 8)}
    assert b["inputs"].dtype == np.int32 and b["weights"].dtype == np.float32


@pytest.mark.parametrize("objective", ["causal_lm", "mlm", "span_corruption", "permutation_lm"])
def test_pipeline_batches_are_what_batch_spec_says(config, objective):
    """The one batch definition (scaling.batch_spec) against what the pipeline really yields."""
    config.data.objective = objective
    config.data.target_len = 8 if objective == "span_corruption" else 0
    b = next(data.make_pipeline(config, "train"))
    got = {k: (v.shape, v.dtype) for k, v in b.items()}
    assert got == batch_spec(objective, 8, 16, config.data.target_len)


# ----------------------------------------------------------------------------- named TFDS datasets

def test_named_dataset_through_mock_data(config):
    import tensorflow_datasets as tfds
    config.data.dataset = "tiny_shakespeare"
    with tfds.testing.mock_data(num_examples=5):
        b = next(data.make_pipeline(config, "train"))
    assert b["inputs"].shape == (8, 16)
    np.testing.assert_array_equal(b["targets"][:, :-1], b["inputs"][:, 1:])


def test_translation_through_mock_data(config):
    import tensorflow_datasets as tfds
    config.data.dataset = "wmt14_translate/de-en"
    config.data.objective = "translation"
    config.data.text_key, config.data.target_key = "de", "en"
    with tfds.testing.mock_data(num_examples=16):
        b = next(data.make_pipeline(config, "validation"))
        first = tfds.data_source("wmt14_translate/de-en", split="validation")[0]
    tok = data.make_tokenizer(config.data)
    assert set(b) == {"inputs", "decoder_inputs", "targets", "weights"}
    assert tok.decode(b["inputs"][0]) == first["de"][:15]
    assert tok.decode(b["targets"][0]) == first["en"][:15]


# ----------------------------------------------------------------------------- entropy, errors

def test_unigram_entropy_matches_a_direct_count(config):
    counts = Counter(_expected_stream(config, "validation"))
    total = sum(counts.values())
    expected = -sum(c / total * math.log(c / total) for c in counts.values())
    assert data.unigram_entropy(config) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("field,value,message", [
    ("data.corpus", "/no/such/dir/*.txt", "data.corpus: no text files match '/no/such/dir/*.txt'"),
    ("data.dataset", "no_such_dataset", "data.dataset: unknown dataset 'no_such_dataset'"),
    ("data.objective", "gan", "data.objective: unknown objective 'gan'"),
    ("data.tokenizer", "letters", "data.tokenizer: unknown tokenizer 'letters'"),
    ("data.seq_len", 0, "data.seq_len"),
    ("train.micro_batches", 3, "train.batch_size"),
])
def test_bad_config_raises_one_line_error_naming_the_field(config, field, value, message):
    section, name = field.split(".")
    config[section][name] = value
    for fn in (data.validate_data_config, lambda c: data.make_pipeline(c, "train")):
        with pytest.raises(ValueError) as e:
            fn(config)
        assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_batch_not_divisible_by_hosts(config):
    with pytest.raises(ValueError, match="^train.batch_size"):
        data.make_pipeline(config, "train", process_index=0, process_count=3)


def test_empty_corpus_dir(tmp_path, config):
    config.data.corpus = str(tmp_path)
    with pytest.raises(ValueError, match="point it at a directory or glob of text files"):
        data.validate_data_config(config)


def test_unprepared_named_dataset(config, tmp_path):
    config.data.dataset = "tiny_shakespeare"
    config.data.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="^data.dataset: 'tiny_shakespeare' is not prepared"):
        data.make_pipeline(config, "train")


def test_sentencepiece_tokenizer_trained_once_and_reused(config):
    pytest.importorskip("sentencepiece")
    config.data.tokenizer = "sentencepiece"
    config.data.sp_vocab_size = 512
    tok = data.make_tokenizer(config.data)
    assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.vocab_size <= 512 and len(tok.sentinel_ids) == 100
    assert tok.sentinel_ids[-1] == tok.vocab_size - 1
    text = "The quick brown fox ¿Qué tal? 🙂"  # the emoji is unseen: byte fallback
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) < len(text.encode())  # merges pieces
    mtime = os.path.getmtime(tok.model_path)
    again = data.make_tokenizer(config.data)
    assert again.model_path == tok.model_path and os.path.getmtime(tok.model_path) == mtime
    batch = next(data.make_pipeline(config, "train"))
    assert batch["inputs"].max() < tok.vocab_size
    assert tok.decode(batch["inputs"][0])


def test_large_splits_use_one_document_per_example(config):
    config.data.pack_max_documents = 4  # the tiny train split (18 docs) counts as "large"
    tok = data.make_tokenizer(config.data)
    chunks = pipeline.make_chunks(config.data, "train", tok)
    assert len(chunks) == 18
    doc = sources.open_split(config.data, "train")[0]
    np.testing.assert_array_equal(chunks[0], [*tok.encode(doc)[:16], tok.eos_id])
    batch = next(data.make_pipeline(config, "train"))
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])


def test_binary_and_non_utf8_corpus_files_are_reported(tmp_path):
    from scaling.data import builtin
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("plain text\n" * 50)
    (corpus / "b.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 50)
    (corpus / "c.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.warns(UserWarning) as record:
        sources = builtin.load_builtin(str(corpus), 0.5, str(tmp_path / "tfds"))
    messages = " ".join(str(w.message) for w in record)
    assert "left out 1 binary file(s)" in messages and "c.bin" in messages
    assert "1 file(s) are not UTF-8" in messages and "b.txt" in messages
    texts = [s[i]["text"] for s in sources.values() for i in range(len(s))]
    assert len(texts) == 2  # the binary file is not a document
    assert any(t.startswith(b"caf\xef\xbf\xbd") for t in texts)  # U+FFFD in UTF-8
