"""`scaling prepare-data` shards and data.dataset=prepared:DIR, against the on-the-fly pipeline."""
import json
from collections import Counter

import numpy as np
import pytest

from scaling import data
from scaling.commands import prepare_data as prepare_cmd
from scaling.commands import train as train_cmd
from scaling.config import base_config
from scaling.data import prepare

DOCS = {f"doc{i:02d}.txt": (f"Document {i}. " + "The quick brown fox jumps over the lazy dog. "
                            * (i % 5 + 1) + "¿Qué tal?\n" * (i % 3)) for i in range(24)}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    for name, text in DOCS.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


@pytest.fixture
def config(corpus_dir, data_dir):
    c = base_config()
    c.data.corpus = str(corpus_dir)
    c.data.data_dir = str(data_dir)
    c.data.seq_len = 16
    c.data.eval_fraction = 0.25
    c.train.batch_size = 8
    return c


def _prepared_config(config, out):
    c = config.copy_and_resolve_references()
    c.data.dataset = f"prepared:{out}"
    return c


def _batches(config, split, n=None, **kwargs):
    it = data.make_pipeline(config, split, **kwargs)
    return list(it) if n is None else [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("objective", ["causal_lm", "mlm"])
def test_prepared_batches_equal_the_on_the_fly_pipeline(config, tmp_path, objective):
    config.data.objective = objective
    meta = prepare.prepare(config, str(tmp_path), rows_per_shard=5, progress=False)
    assert len(meta["splits"]["train"]["shards"]) > 1
    p = _prepared_config(config, tmp_path)
    # train: shuffled, endless (40 batches run past the first epoch); validation: one pass.
    _assert_batches_equal(_batches(p, "train", 40), _batches(config, "train", 40))
    _assert_batches_equal(_batches(p, "validation", num_epochs=1),
                          _batches(config, "validation", num_epochs=1))
    assert data.unigram_entropy(p) == pytest.approx(data.unigram_entropy(config), rel=1e-12)


def test_files_prepared_by_a_process_pool_through_the_cli(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.jsonl").write_text("".join(
            json.dumps({"text": f"file {i} line {j}: " + "abc " * j}) + "\n" for j in range(30)))
    out = tmp_path / "prepared"
    overrides = ["--config.data.dataset=files", f"--config.data.files={corpus}/*.jsonl",
                 "--config.data.seq_len=32", "--config.data.eval_fraction=0.2"]
    code = prepare_cmd.main(["--config", "experiments/gpt2.py:tiny", "--out", str(out),
                             "--processes", "2", *overrides])
    assert code == 0, capsys.readouterr().err
    c = base_config()
    c.data.dataset, c.data.files = "files", f"{corpus}/*.jsonl"
    c.data.seq_len, c.data.eval_fraction, c.train.batch_size = 32, 0.2, 4
    for split in ("train", "validation"):
        _assert_batches_equal(_batches(_prepared_config(c, out), split, num_epochs=1),
                              _batches(c, split, num_epochs=1))


def test_two_hosts_read_disjoint_rows_covering_the_split(config, tmp_path):
    prepare.prepare(config, str(tmp_path), rows_per_shard=7, progress=False)
    p = _prepared_config(config, tmp_path)

    def windows(batches):  # each real row as the window it was cut from
        return Counter(tuple(np.append(b["inputs"][r], b["targets"][r, -1]))
                       for b in batches for r in range(len(b["inputs"]))
                       if b["weights"][r].sum() > 0)

    hosts = [_batches(p, "train", process_index=i, process_count=2, num_epochs=1)
             for i in range(2)]
    assert all(b["inputs"].shape[0] == 4 for h in hosts for b in h)
    tok = data.make_tokenizer(config.data)
    stream = data.pipeline.packing.pack_documents(
        data.pipeline.sources.open_split(config.data, "train"), tok)
    reference = Counter(tuple(np.pad(stream[s:s + 17], (0, max(0, s + 17 - len(stream)))))
                        for s in range(0, len(stream) - 1, 16))
    assert windows(hosts[0]) + windows(hosts[1]) == reference
    assert sum(windows(h).total() for h in hosts) == reference.total()


def test_meta_mismatch_is_one_line_naming_the_field(config, tmp_path, capsys):
    prepare.prepare(config, str(tmp_path), splits=("train",), progress=False)
    p = _prepared_config(config, tmp_path)
    p.data.seq_len = 32
    with pytest.raises(ValueError, match=r"^data.seq_len: .* was prepared for seq_len=16, "
                                         r"this config has 32; [^\n]*$"):
        data.make_pipeline(p, "train")
    p.data.seq_len, p.data.objective = 16, "permutation_lm"
    with pytest.raises(ValueError, match="^data.objective: .* prepared for 'causal_lm'"):
        data.validate_data_config(p)
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps(dict(meta, tokenizer="sp-other.model")))
    p.data.objective = "causal_lm"
    with pytest.raises(ValueError, match="^data.tokenizer: .* prepared with tokenizer "
                                         "'sp-other.model', this config's is 'byte'"):
        data.validate_data_config(p)
    capsys.readouterr()  # drop what preparing the corpus printed (TFDS progress bars)
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir",
                           str(tmp_path / "run"), f"--config.data.dataset=prepared:{tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "error: data.tokenizer:" in err, err
    code = train_cmd.main(["--config", "experiments/gpt2.py:tiny", "--workdir",
                           str(tmp_path / "run"), f"--config.data.dataset=prepared:{tmp_path}x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "holds no meta.json" in err, err


@pytest.mark.parametrize("args,message", [
    ([], "--out: required"),
    (["--out", "OUT", "--processes", "0"], "--processes: must be >= 1, got 0"),
    (["--out", "OUT", "--config.data.objective=translation"],
     "data.objective: prepare-data packs text for causal_lm"),
    (["--out", "OUT", "--config.data.dataset=prepared:OUT"], "data.dataset: already prepared"),
])
def test_prepare_data_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    code = prepare_cmd.main(["--config", "experiments/gpt2.py:tiny", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith(f"scaling prepare-data: error: {message}"), err
    assert not (tmp_path / "out").exists()
