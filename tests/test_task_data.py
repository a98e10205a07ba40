"""Task data: example packing, the builtin tasks' by-file split, GLUE through a mocked source."""
import os

import numpy as np
import pytest

from scaling import data
from scaling.config_loading import load
from scaling.data import builtin
from scaling.data.tokenizer import ByteTokenizer
from scaling.tasks import builtin_modules, builtin_tokens, registry
from scaling.tasks import data as task_data

TOK = ByteTokenizer()


def test_encoder_pair_is_cls_a_sep_b_sep_with_token_types():
    ex = task_data.encode(("ab", "xyz"), 1, TOK, 10, "encoder", registry.SEQUENCE)
    a, b = list(TOK.encode("ab")), list(TOK.encode("xyz"))
    assert ex["inputs"].tolist() == [TOK.cls_id, *a, TOK.sep_id, *b, TOK.sep_id, 0, 0]
    assert ex["token_types"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert ex["input_mask"].tolist() == [1] * 8 + [0, 0]
    assert ex["targets"].shape == () and int(ex["targets"]) == 1 and float(ex["weights"]) == 1


def test_decoder_pair_is_a_sep_b_eos_and_truncation_is_longest_first():
    ex = task_data.encode(("abcdefgh", "xy"), 0, TOK, 8, "decoder", registry.SEQUENCE)
    # 8 = 2 specials + 6 text tokens: the longer segment gives up its tail.
    assert ex["inputs"].tolist() == [*TOK.encode("abcd"), TOK.sep_id, *TOK.encode("xy"),
                                     TOK.eos_id]
    assert "token_types" not in ex and ex["input_mask"].sum() == 8
    assert task_data.fit_lengths([10, 3], 8) == [5, 3]
    assert task_data.fit_lengths([5, 5], 6) == [3, 3]


def test_regression_and_token_targets():
    ex = task_data.encode(("a", "b"), 3.25, TOK, 8, "encoder", registry.REGRESSION)
    assert ex["targets"].dtype == np.float32 and float(ex["targets"]) == 3.25
    ex = task_data.encode(("abc",), np.array([1, 2, 3]), TOK, 6, "encoder", registry.TOKEN)
    assert ex["targets"].tolist() == [0, 1, 2, 3, 0, 0]     # [CLS] a b c [SEP] PAD
    assert ex["weights"].tolist() == [0, 1, 1, 1, 0, 0]


def test_builtin_modules_splits_by_file_and_pretraining_can_exclude_the_held_out_files():
    train = builtin_modules.split_files("train")
    validation = builtin_modules.split_files("validation")
    assert not {p for p, _ in train} & {p for p, _ in validation}
    # Every class is in both splits.
    assert {label for _, label in train} == {label for _, label in validation} == set(range(8))
    corpus = builtin.resolve_corpus("")
    kept = builtin.resolve_corpus("", builtin_modules.heldout_globs())
    assert {p for p, _ in validation} <= set(corpus) and not {p for p, _ in validation} & set(kept)
    assert set(corpus) - set(kept) == {p for p, _ in validation}   # exactly those, no more
    assert builtin.corpus_key(kept, 0.02) != builtin.corpus_key(corpus, 0.02)
    # No directory is held out whole: validation text has training text beside it, so
    # the splits differ in files, not in subject (a name-prefix rule held out all of xml/dom).
    train_dirs = {os.path.dirname(p) for p, _ in train}
    assert {os.path.dirname(p) for p, _ in validation} <= train_dirs
    examples = builtin_modules.examples("validation")
    assert len(examples) > 500
    assert all(len(t.encode()) >= builtin_modules.SNIPPET_BYTES for t, _ in examples[:50])


def test_builtin_tokens_labels_follow_python_tokenize():
    text = "x = 12  # hi\ns = 'a'\n"
    labels = builtin_tokens.char_labels(text)
    names = [builtin_tokens.LABELS[i] for i in labels]
    assert names[0] == "name" and names[2] == "op" and names[4:6] == ["number"] * 2
    assert names[8:12] == ["comment"] * 4 and names[17:20] == ["string"] * 3
    assert names[1] == names[12] == "other"
    assert builtin_tokens.byte_labels("é", np.array([4])).tolist() == [4, 4]


GLUE_MRPC = [{"sentence1": f"left {i}".encode(), "sentence2": f"right {i}".encode(),
              "label": i % 2, "idx": i} for i in range(11)]


@pytest.fixture
def glue_config(monkeypatch):
    """A BERT fine-tuning config on glue/mrpc whose TFDS records are mocked."""
    calls = []

    def records(data_cfg, split):
        calls.append(split)
        return GLUE_MRPC
    monkeypatch.setattr(task_data, "_records", records)
    config = load("experiments/finetune.py:bert_base_mrpc")
    config.data.tokenizer = "byte"   # the recipe's WordPiece files need not be here
    config.data.seq_len = 16
    config.train.batch_size = 4
    return config, calls


def test_glue_by_name_through_the_grain_pipeline(glue_config):
    config, calls = glue_config
    batches = list(data.make_pipeline(config, "validation", num_epochs=1))
    assert calls[-1] == "validation"
    # 11 examples in 3 batches of 4; the last one padded with a zero-weight example.
    assert [b["weights"].tolist() for b in batches][-1] == [1, 1, 1, 0]
    labels = np.concatenate([b["targets"] for b in batches])[:11]
    assert labels.tolist() == [r["label"] for r in GLUE_MRPC]
    first = batches[0]["inputs"][0]
    assert TOK.decode(first) == "left 0right 0" and first[0] == TOK.cls_id
    config.task.max_train_examples = 5
    assert len(task_data.open_task(config, "train")) == 5


def test_mnli_reads_validation_matched(glue_config, monkeypatch):
    config, calls = glue_config
    config.data.dataset = "glue/mnli"
    monkeypatch.setattr(task_data, "_records", lambda cfg, split: calls.append(split) or [
        {"premise": b"p", "hypothesis": b"h", "label": 2}])
    items = task_data.open_task(config, "validation")
    assert calls[-1] == "validation_matched" and items[0] == (("p", "h"), 2)


def test_unprepared_glue_is_a_one_line_error(tmp_path):
    config = load("experiments/finetune.py:bert_base_sst2")
    config.data.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="^data.dataset: 'glue/sst2' is not prepared") as e:
        task_data.check_available(config)
    assert "\n" not in str(e.value)
    assert not os.listdir(tmp_path)
