"""Tests of where documents come from: unprepared TFDS names, data.download, data.files."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from scaling.commands import train as train_cmd
from scaling.config import base_config
from scaling.data import sources

# ----------------------------------------------------------------------------- unprepared TFDS


def test_unprepared_tfds_name_is_one_line_naming_tfds_build_and_download(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir", str(workdir),
                           "--config.data.dataset=tiny_shakespeare",
                           f"--config.data.data_dir={tmp_path / 'tfds'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("scaling train: error: data.dataset: 'tiny_shakespeare' is not "
                          "prepared"), err
    assert f"tfds build tiny_shakespeare --file_format=array_record " \
           f"--data_dir={tmp_path / 'tfds'}" in err, err
    assert "data.download=True" in err, err
    assert not os.path.exists(workdir)


TOY_TEXTS = [f"toy document {i}: " + "abc " * i for i in range(12)]


class ScalingToyTexts(tfds.core.GeneratorBasedBuilder):
    """A registered dataset whose 'download' is local: stands in for a real TFDS name."""

    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(TOY_TEXTS[:8]),
                "test": self._generate_examples(TOY_TEXTS[8:])}

    def _generate_examples(self, texts):
        for i, t in enumerate(texts):
            yield i, {"text": t}


def test_download_prepares_an_unprepared_tfds_name(tmp_path):
    c = base_config()
    c.data.dataset = "scaling_toy_texts"
    c.data.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match="not prepared.*data.download=True"):
        sources.open_split(c.data, "train")
    c.data.download = True
    train = sources.open_split(c.data, "train")
    validation = sources.open_split(c.data, "validation")  # falls back to 'test'
    assert sorted(train[i] for i in range(len(train))) == sorted(TOY_TEXTS[:8])
    assert sorted(validation[i] for i in range(len(validation))) == sorted(TOY_TEXTS[8:])
    assert list((tmp_path / "scaling_toy_texts").rglob("*.array_record*"))


# ----------------------------------------------------------------------------- data.files

def _docs(prefix, n):
    return [f"{prefix} document {i}: ¿qué tal? " + "lorem ipsum " * (i % 4) for i in range(n)]


@pytest.fixture
def files_dir(tmp_path):
    """One file of each format; returns (dir, {file name: the documents written to it})."""
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from array_record.python.array_record_module import ArrayRecordWriter

    written = {}
    docs = _docs("jsonl", 7)
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"id": i, "content": d}) + "\n" for i, d in enumerate(docs)))
    written["a.jsonl"] = docs
    docs = _docs("gzipped", 5)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(
        "".join(json.dumps({"content": d}) + "\n" for d in docs).encode()))
    written["b.jsonl.gz"] = docs
    docs = _docs("parquet", 9)
    pq.write_table(pa.table({"content": docs, "n": list(range(9))}), tmp_path / "c.parquet")
    written["c.parquet"] = docs
    docs = _docs("array_record", 6)
    writer = ArrayRecordWriter(str(tmp_path / "d.array_record"), "group_size:1")
    for d in docs:
        writer.write(d.encode())
    writer.close()
    written["d.array_record"] = docs
    text = "a whole file\nof plain text\n\nis one document\n"
    (tmp_path / "e.txt").write_text(text)
    written["e.txt"] = [text]
    return tmp_path, written


def _files_config(files, **fields):
    c = base_config()
    c.data.dataset = "files"
    c.data.files = files
    c.data.text_key = "content"
    c.data.eval_fraction = 0.3
    for k, v in fields.items():
        c.data[k] = v
    return c


def _split(c, split):
    source = sources.open_split(c.data, split)
    return [source[i] for i in range(len(source))]


def test_files_of_every_format_read_back_what_was_written(files_dir):
    d, written = files_dir
    c = _files_config(f"{d}/*.jsonl,{d}/*.gz,{d}/*.parquet,{d}/*.array_record,{d}/e.txt")
    train, validation = _split(c, "train"), _split(c, "validation")
    everything = [doc for name in sorted(written) for doc in written[name]]
    assert sorted(train + validation) == sorted(everything)
    assert train and validation and not set(train) & set(validation)
    # File order is kept within a split: train is `everything` less the held-out documents.
    assert train == [doc for doc in everything if doc not in set(validation)]


def test_hold_out_is_deterministic_and_independent_of_file_order(files_dir):
    d, _ = files_dir
    c = _files_config(f"{d}/*.parquet,{d}/a.jsonl")
    again = _files_config(f"{d}/a.jsonl,{d}/*.parquet")
    assert set(_split(c, "validation")) == set(_split(again, "validation"))
    assert set(_split(c, "train")) == set(_split(again, "train"))
    larger = _files_config(f"{d}/a.jsonl,{d}/*.parquet", eval_fraction=0.6)
    assert set(_split(c, "validation")) <= set(_split(larger, "validation"))


def test_eval_files_are_the_validation_split(files_dir):
    d, written = files_dir
    c = _files_config(f"{d}/a.jsonl,{d}/c.parquet", eval_files=f"{d}/d.array_record")
    assert _split(c, "train") == written["a.jsonl"] + written["c.parquet"]
    assert _split(c, "validation") == written["d.array_record"]


def test_text_files_one_document_per_line(tmp_path):
    (tmp_path / "x.txt").write_text("first line\n\nsecond line\nthird\n")
    (tmp_path / "y.md").write_text("fourth\n")
    c = _files_config(str(tmp_path), eval_files=str(tmp_path / "y.md"),
                      files_text_per_line=True)
    assert _split(c, "train") == ["first line", "second line", "third", "fourth"]
    assert _split(c, "validation") == ["fourth"]


def test_files_through_the_pipeline(files_dir):
    from scaling import data
    d, written = files_dir
    c = _files_config(f"{d}/a.jsonl", eval_files=f"{d}/c.parquet")
    c.data.seq_len, c.train.batch_size = 16, 4
    batch = next(data.make_pipeline(c, "validation"))
    tok = data.make_tokenizer(c.data)
    stream = [i for doc in written["c.parquet"] for i in [*tok.encode(doc), tok.eos_id]]
    np.testing.assert_array_equal(batch["inputs"].reshape(-1), stream[:64])


@pytest.mark.parametrize("fields,message", [
    (dict(files=""), "data.files: dataset='files' needs"),
    (dict(files="/no/such/*.jsonl"), "data.files: no files match '/no/such/*.jsonl'"),
    (dict(eval_files="/no/such.parquet"), "data.eval_files: no files match"),
    (dict(text_key="body"), "data.text_key: field 'body' not in line 1 of"),
])
def test_bad_files_config_is_one_line_naming_the_field(files_dir, fields, message):
    from scaling import data
    d, _ = files_dir
    c = _files_config(f"{d}/a.jsonl")
    for k, v in fields.items():
        c.data[k] = v
    with pytest.raises(ValueError) as e:
        data.validate_data_config(c)
        data.make_pipeline(c, "train")
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_random_access_across_row_groups_and_records_after_pickling(files_dir):
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq
    d, written = files_dir
    texts = _docs("grouped", 10)
    column = texts[:4] + [None, "  "] + texts[4:]  # a null and a blank row are no documents
    pq.write_table(pa.table({"content": column}), d / "g.parquet", row_group_size=3)
    c = _files_config(f"{d}/g.parquet,{d}/d.array_record,{d}/a.jsonl",
                      eval_files=f"{d}/e.txt")
    expected = texts + written["d.array_record"] + written["a.jsonl"]
    source = pickle.loads(pickle.dumps(sources.open_split(c.data, "train")))
    order = np.random.default_rng(0).permutation(len(expected))
    assert len(source) == len(expected)
    assert [source[int(i)] for i in order] == [expected[i] for i in order]
