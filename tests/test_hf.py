"""import-hf / export-hf against the PyTorch models of `transformers` (no network).

Tiny HF models are built locally with weights at realistic scale (matrices N(0, 1/fan_in),
non-zero biases, LayerNorm gains != 1): with HF's N(0, 0.02) init, tanh and erf GELU agree
to ~4e-5 and a wrong activation could pass. Our forward (fp32) must match theirs to 1e-4.
"""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from scaling.cli import main  # noqa: E402
from scaling.hf import run_dir  # noqa: E402
from scaling.models import build_model  # noqa: E402

TOL = 1e-4
CODE = ["def add(a, b):\n    return a + b\n", "import os\nprint(os.getcwd())\n",
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"] * 4


# ----------------------------------------------------------------------------- helpers

def realistic(model, seed=0):
    """Re-initialise every parameter at realistic scale (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                p.copy_(noise * p.shape[-1] ** -0.5)
            elif "norm" in name.lower() or ".ln_" in name:
                p.copy_(1 + 0.1 * noise) if name.endswith("weight") else p.copy_(0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model.eval()


def save(model, path, tokenizer=None):
    model.save_pretrained(str(path))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    return str(path)


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `scaling ARGV...` run in-process."""
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def import_dir(capsys, src, family, workdir, *extra):
    rc, out, err = run_cli(capsys, "import-hf", src, "--family", family, "--workdir",
                           str(workdir), *extra)
    assert rc == 0, err
    config, spec = run_dir.read_run(str(workdir))
    params, _ = run_dir.load_params(str(workdir), config, spec)
    return spec, params


def ours(spec, params, batch):
    return np.asarray(build_model(spec).apply({"params": params},
                                              {k: np.asarray(v) for k, v in batch.items()}))


def jax_leaves(tree):
    import jax
    return jax.tree.leaves(tree)


def bpe_tokenizer(path, texts=CODE, vocab_size=300):
    """A byte-level BPE tokenizer with GPT-2's one special token (<|endoftext|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>")
    fast.save_pretrained(str(path))
    return fast


def word_tokenizer(path):
    """A BERT-like word-level tokenizer whose padding is id 1, not 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    words = sorted({w for t in CODE for w in t.split()})
    vocab = {t: i for i, t in enumerate(["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(str(path))
    return fast


def gpt2_model(vocab=100, positions=32, **kw):
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=vocab,
                                  n_positions=positions, **kw)
    return realistic(transformers.GPT2LMHeadModel(cfg))


def bert_config(cls_name, **kw):
    cls = getattr(transformers, cls_name)
    return cls(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
               intermediate_size=64, vocab_size=90, **kw)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    model = gpt2_model()
    return model, save(model, tmp_path_factory.mktemp("gpt2"))


# ----------------------------------------------------------------------------- GPT-2

def test_gpt2_logits_export_and_round_trip(capsys, tmp_path):
    import dataclasses
    model = gpt2_model()
    src = save(model, tmp_path / "hf")
    spec, params = import_dir(capsys, src, "gpt2", tmp_path / "run")
    assert spec.activation == "gelu_tanh" and spec.vocab_size == 100
    ids = np.random.default_rng(0).integers(0, 100, (2, 32))
    theirs = model(torch.tensor(ids)).logits.detach().numpy()
    diff = np.abs(ours(spec, params, {"inputs": ids}) - theirs).max()
    assert diff <= TOL, diff
    # The test can fail: the exact (erf) GELU instead of GPT-2's tanh form is visible.
    wrong = dataclasses.replace(spec, activation="gelu")
    assert np.abs(ours(wrong, params, {"inputs": ids}) - theirs).max() > 10 * TOL

    rc, _, err = run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                         "--out", str(tmp_path / "out"))
    assert rc == 0, err
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path / "out"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    reloaded = loaded.eval()(torch.tensor(ids)).logits.detach().numpy()
    assert np.abs(reloaded - theirs).max() == 0.0  # the same tensors, bit for bit
    _, again = import_dir(capsys, str(tmp_path / "out"), "gpt2", tmp_path / "run2")
    for a, b in zip(*(jax_leaves(t) for t in (params, again))):
        np.testing.assert_array_equal(a, b)


def test_gpt2_scanned_layers_and_untied_head(capsys, tmp_path):
    model = gpt2_model(tie_word_embeddings=False)
    src = save(model, tmp_path / "hf")
    spec, params = import_dir(capsys, src, "gpt2", tmp_path / "run", "--scan-layers")
    assert spec.scan_layers and not spec.tie_embeddings
    ids = np.random.default_rng(1).integers(0, 100, (1, 20))
    theirs = model(torch.tensor(ids)).logits.detach().numpy()
    assert np.abs(ours(spec, params, {"inputs": ids}) - theirs).max() <= TOL
    assert run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                   "--out", str(tmp_path / "out"))[0] == 0
    loaded = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "out")).eval()
    np.testing.assert_array_equal(loaded(torch.tensor(ids)).logits.detach().numpy(), theirs)


# ----------------------------------------------------------------------------- BERT / RoBERTa

def padded_batch(rng, vocab, lengths, t, types=2, pad_id=0):
    ids = rng.integers(5, vocab, (len(lengths), t))
    mask = (np.arange(t)[None] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, pad_id)
    token_types = (rng.integers(0, types, ids.shape) * mask) if types > 1 else 0 * ids
    return ids, mask, token_types


def test_bert_logits_with_padding_and_export(capsys, tmp_path):
    model = realistic(transformers.BertForMaskedLM(bert_config("BertConfig",
                                                               max_position_embeddings=24)))
    src = save(model, tmp_path / "hf")
    spec, params = import_dir(capsys, src, "bert", tmp_path / "run")
    assert (spec.activation, spec.layer_norm_eps, spec.pooler) == ("gelu", 1e-12, False)
    ids, mask, types = padded_batch(np.random.default_rng(0), 90, [24, 13, 5], 24)
    theirs = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                   token_type_ids=torch.tensor(types)).logits.detach().numpy()
    got = ours(spec, params, {"inputs": ids, "input_mask": mask, "token_types": types})
    real = mask.astype(bool)
    diff = np.abs(got - theirs)[real].max()
    assert diff <= TOL, diff

    assert run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                   "--out", str(tmp_path / "out"))[0] == 0
    loaded = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "out")).eval()
    again = loaded(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                   token_type_ids=torch.tensor(types)).logits.detach().numpy()
    np.testing.assert_array_equal(again, theirs)


def test_roberta_reads_positions_from_row_two(capsys, tmp_path):
    import dataclasses
    cfg = bert_config("RobertaConfig", max_position_embeddings=26, type_vocab_size=1,
                      pad_token_id=1, layer_norm_eps=1e-5)
    model = realistic(transformers.RobertaForMaskedLM(cfg))
    src = save(model, tmp_path / "hf")
    spec, params = import_dir(capsys, src, "roberta", tmp_path / "run")
    assert (spec.position_offset, spec.max_positions, spec.type_vocab_size) == (2, 24, 1)
    ids, mask, types = padded_batch(np.random.default_rng(1), 90, [24, 9], 24, types=1,
                                    pad_id=1)
    theirs = model(input_ids=torch.tensor(ids),
                   attention_mask=torch.tensor(mask)).logits.detach().numpy()
    batch = {"inputs": ids, "input_mask": mask, "token_types": types}
    real = mask.astype(bool)
    diff = np.abs(ours(spec, params, batch) - theirs)[real].max()
    assert diff <= TOL, diff
    # Reading rows from 0 (no offset) gives other logits: the offset is what makes them equal.
    unshifted = dataclasses.replace(spec, position_offset=0)
    assert np.abs(ours(unshifted, params, batch) - theirs)[real].max() > 100 * TOL

    assert run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                   "--out", str(tmp_path / "out"))[0] == 0
    assert json.load(open(tmp_path / "out" / "config.json"))["pad_token_id"] == 1
    loaded = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "out")).eval()
    assert type(loaded).__name__ == "RobertaForMaskedLM"
    again = loaded(input_ids=torch.tensor(ids),
                   attention_mask=torch.tensor(mask)).logits.detach().numpy()
    np.testing.assert_array_equal(again, theirs)


def test_pytorch_bin_and_backbone_only_checkpoints(capsys, tmp_path):
    model = realistic(transformers.BertForMaskedLM(bert_config("BertConfig",
                                                               max_position_embeddings=16)))
    safe = save(model, tmp_path / "safe")
    legacy = tmp_path / "bin"
    legacy.mkdir()
    (legacy / "config.json").write_text(open(os.path.join(safe, "config.json")).read())
    # As old BERT checkpoints: tied copies included, LayerNorm gamma/beta, the NSP head.
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                       "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    state["cls.seq_relationship.weight"] = torch.zeros(2, 32)
    torch.save(state, legacy / "pytorch_model.bin")
    _, from_safe = import_dir(capsys, safe, "bert", tmp_path / "run_safe")
    rc, _, err = run_cli(capsys, "import-hf", str(legacy), "--family", "bert", "--workdir",
                         str(tmp_path / "run_bin"))
    assert rc == 2 and "unexpected tensor cls.seq_relationship.weight" in err
    _, from_bin = import_dir(capsys, str(legacy), "bert", tmp_path / "run_bin",
                             "--skip", "cls.seq_relationship")
    for a, b in zip(jax_leaves(from_safe), jax_leaves(from_bin)):
        np.testing.assert_array_equal(a, b)

    backbone = realistic(transformers.BertModel(bert_config("BertConfig",
                                                            max_position_embeddings=16)))
    src = save(backbone, tmp_path / "backbone")
    rc, _, err = run_cli(capsys, "import-hf", src, "--family", "bert", "--workdir",
                         str(tmp_path / "no_head"))
    assert rc == 2 and "--new-head" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no_head").exists()
    spec, params = import_dir(capsys, src, "bert", tmp_path / "new_head", "--new-head")
    assert spec.pooler and "pooler" in params and "head" in params
    np.testing.assert_array_equal(params["pooler"]["bias"],
                                  backbone.pooler.dense.bias.detach().numpy())


# ----------------------------------------------------------------------------- XLNet

def test_xlnet_query_stream_matches_perm_mask(capsys, tmp_path):
    cfg = transformers.XLNetConfig(n_layer=2, d_model=32, n_head=4, d_inner=64, vocab_size=80)
    model = realistic(transformers.XLNetLMHeadModel(cfg))
    src = save(model, tmp_path / "hf")
    spec, params = import_dir(capsys, src, "xlnet", tmp_path / "run")
    b, t = 2, 12
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 80, (b, t))
    ranks = np.stack([rng.permutation(t) for _ in range(b)])
    segments = (np.arange(t)[None] >= np.array([[7], [4]])).astype(np.int64)
    # HF: perm_mask[b, i, j] = 1 iff i may not see j's content; identity target mapping.
    perm_mask = (ranks[:, None, :] >= ranks[:, :, None]).astype(np.float32)
    target_mapping = np.broadcast_to(np.eye(t, dtype=np.float32), (b, t, t))
    theirs = model(input_ids=torch.tensor(ids), perm_mask=torch.tensor(perm_mask),
                   target_mapping=torch.tensor(target_mapping.copy()),
                   token_type_ids=torch.tensor(segments)).logits.detach().numpy()
    got = ours(spec, params, {"inputs": ids, "perm_ranks": ranks, "token_types": segments})
    # The first position of the order sees no key at all: HF attends uniformly to every
    # masked key there (scores - 1e30), ours returns zeros; XLNet never predicts it.
    seen = ranks > 0
    diff = np.abs(got - theirs)[seen].max()
    assert diff <= TOL, diff

    assert run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                   "--out", str(tmp_path / "out"))[0] == 0
    loaded = transformers.XLNetLMHeadModel.from_pretrained(str(tmp_path / "out")).eval()
    again = loaded(input_ids=torch.tensor(ids), perm_mask=torch.tensor(perm_mask),
                   target_mapping=torch.tensor(target_mapping.copy()),
                   token_type_ids=torch.tensor(segments)).logits.detach().numpy()
    np.testing.assert_array_equal(again, theirs)


# ----------------------------------------------------------------------------- export of our models

@pytest.mark.parametrize("experiment", ["gpt2", "roberta"])
def test_export_of_a_model_made_here(capsys, tmp_path, experiment):
    """Our own layouts: padded vocabulary rows, scanned layers, RoBERTa without a type table."""
    import jax
    from scaling.config_loading import load
    from scaling.models import abstract_params, model_spec
    config = load(f"experiments/{experiment}.py:tiny")
    config.model.update(num_layers=2, width=32, num_heads=4, mlp_dim=64, max_len=26,
                        vocab_size=100, vocab_pad_multiple=16, scan_layers=True)
    if experiment == "roberta":
        config.model.update(type_vocab_size=0, pooler=False)
    spec = model_spec(config)
    shapes = jax.tree.map(lambda x: x.shape, nn_unbox(abstract_params(spec)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda shape: (rng.normal(size=shape) * shape[-1] ** -0.5
                                         ).astype(np.float32), shapes,
                          is_leaf=lambda x: isinstance(x, tuple))
    run_dir.write_run(str(tmp_path / "run"), config, spec, params)
    assert run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "run"),
                   "--out", str(tmp_path / "out"))[0] == 0
    loaded = transformers.AutoModelForCausalLM if experiment == "gpt2" else \
        transformers.AutoModelForMaskedLM
    model = loaded.from_pretrained(str(tmp_path / "out")).eval()
    ids = rng.integers(5, 100, (2, 24))
    theirs = model(torch.tensor(ids)).logits.detach().numpy()
    got = ours(spec, params, {"inputs": ids})[..., :100]  # the padded rows are not exported
    assert theirs.shape == got.shape
    assert np.abs(got - theirs).max() <= TOL


def nn_unbox(tree):
    import flax.linen as nn
    return nn.unbox(tree)


# ----------------------------------------------------------------------------- tokenizer

def test_hf_tokenizer_special_ids_and_mlm_padding(tmp_path):
    from scaling.data import make_tokenizer, objectives
    from scaling.data.hf_tokenizer import HFTokenizer
    bpe_tokenizer(tmp_path / "bpe")
    gpt = HFTokenizer(str(tmp_path / "bpe"))
    eot = gpt._tok.token_to_id("<|endoftext|>")
    assert gpt.pad_id == gpt.eos_id == gpt.bos_id == eot  # GPT-2 pads with its eos
    assert gpt.mask_id is None and gpt.sentinel_ids == [] and eot not in gpt.regular_ids
    text = "def add(a, b):\n    return a"
    assert gpt.decode(gpt.encode(text)) == text

    word_tokenizer(tmp_path / "word")
    config = type("D", (), {"tokenizer": f"hf:{tmp_path / 'word'}"})
    tok = make_tokenizer(config)
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == (1, 2, 3, 4)
    assert set(tok.special_ids) == {0, 1, 2, 3, 4} and tok.regular_ids.min() == 5
    ex = objectives.mlm(tok.encode("def add(a, b):"), 8, tok, 0.5, np.random.default_rng(0))
    assert list(ex["targets"][:2]) == [2, tok.encode("def")[0]]
    np.testing.assert_array_equal(ex["targets"][ex["input_mask"] == 0], 1)  # pad id 1


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_exit_2_with_one_line_and_write_nothing(capsys, tmp_path, gpt2_dir):
    from safetensors.numpy import load_file, save_file
    _, src = gpt2_dir
    bert_src = save(realistic(transformers.BertForMaskedLM(
        bert_config("BertConfig", max_position_embeddings=16))), tmp_path / "bert")
    (tmp_path / "empty").mkdir()
    bad_shape = tmp_path / "bad_shape"
    bad_shape.mkdir()
    (bad_shape / "config.json").write_text(open(os.path.join(src, "config.json")).read())
    tensors = load_file(os.path.join(src, "model.safetensors"))
    tensors["transformer.h.1.mlp.c_fc.bias"] = np.zeros(7, np.float32)
    save_file(tensors, str(bad_shape / "model.safetensors"), metadata={"format": "pt"})
    big_tok = tmp_path / "big_tok"
    save(gpt2_model(vocab=100), big_tok, bpe_tokenizer(tmp_path / "tok300"))  # 300 > 100
    cases = {
        "not_hf": ([str(tmp_path / "empty"), "--family", "gpt2"], "no config.json"),
        "mismatch": ([bert_src, "--family", "gpt2"], "model_type 'bert'"),
        "t5": ([src, "--family", "t5"], "not supported"),
        "shape": ([str(bad_shape), "--family", "gpt2"], "transformer.h.1.mlp.c_fc.bias"),
        "vocab": ([str(big_tok), "--family", "gpt2"], "model.vocab_size"),
    }
    for name, (args, message) in cases.items():
        workdir = tmp_path / f"run_{name}"
        rc, _, err = run_cli(capsys, "import-hf", *args, "--workdir", str(workdir))
        assert rc == 2, (name, err)
        assert message in err and len(err.strip().splitlines()) == 1, (name, err)
        assert not workdir.exists(), name

    import_dir(capsys, src, "gpt2", tmp_path / "once")
    before = sorted(os.listdir(tmp_path / "once"))
    rc, _, err = run_cli(capsys, "import-hf", src, "--family", "gpt2", "--workdir",
                         str(tmp_path / "once"))
    assert rc == 2 and "already" in err and sorted(os.listdir(tmp_path / "once")) == before
    rc, _, err = run_cli(capsys, "export-hf", "--workdir", str(tmp_path / "once"), "--out",
                         str(tmp_path / "once"))
    assert rc == 2 and "--out" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- end to end

def test_import_finetune_and_sample_gpt2(capsys, tmp_path):
    corpus = tmp_path / "corpus"  # a few files: the BPE tokenizer then tokenizes little
    corpus.mkdir()
    for i, text in enumerate(CODE):
        (corpus / f"{i}.py").write_text(text * 8)
    tok = bpe_tokenizer(tmp_path / "tok", vocab_size=400)
    src = save(gpt2_model(vocab=len(tok), positions=32), tmp_path / "hf", tok)
    spec, _ = import_dir(capsys, src, "gpt2", tmp_path / "imported")
    config = json.load(open(tmp_path / "imported" / "config.json"))
    assert config["data"]["tokenizer"] == f"hf:{tmp_path / 'imported' / 'tokenizer'}"

    common = ["--config.train.steps=2", "--config.train.batch_size=2",
              "--config.train.log_every=1", "--config.train.eval_every=2",
              "--config.train.eval_steps=1", "--config.metrics.tensorboard=False",
              "--config.metrics.device_peak_tflops=1.0", "--config.parallel.mesh.data=1",
              "--config.parallel.num_devices=1", f"--config.data.corpus={corpus}",
              f"--config.data.data_dir={tmp_path / 'tfds'}"]
    rc, out, err = run_cli(capsys, "train", "--config",
                           f"experiments/hf.py:{tmp_path / 'imported'}",
                           "--workdir", str(tmp_path / "ft"), *common)
    assert rc == 0, err
    assert "initialised parameters from" in out
    rc, out, err = run_cli(capsys, "sample", "--workdir", str(tmp_path / "imported"),
                           "--tokens", "4", "--prompt", "def ", "--greedy")
    assert rc == 0, err
    assert out.startswith("def ")
    # The byte tokenizer's 384 ids do not fit a 300-row embedding: refused before compiling.
    rc, _, err = run_cli(capsys, "train", "--config", "experiments/gpt2.py:tiny",
                         "--workdir", str(tmp_path / "small"), "--config.model.vocab_size=300",
                         *common)
    assert rc == 2 and "model.vocab_size" in err and "data.tokenizer" in err
    assert not (tmp_path / "small").exists()


def test_finetune_an_imported_bert_on_the_builtin_task(capsys, tmp_path):
    """Imported HF weights + its tokenizer -> a task head fine-tuned on builtin_modules: the
    backbone comes from the import, the head is fresh, the MLM head unused."""
    tok = word_tokenizer(tmp_path / "tok")
    cfg = bert_config("BertConfig", max_position_embeddings=64)  # 90 ids fit the tokenizer
    src = save(realistic(transformers.BertForMaskedLM(cfg)), tmp_path / "hf", tok)
    import_dir(capsys, src, "bert", tmp_path / "imported")
    rc, out, err = run_cli(
        capsys, "train", "--config", f"experiments/hf.py:{tmp_path / 'imported'}",
        "--workdir", str(tmp_path / "ft"), "--config.data.objective=task",
        "--config.data.dataset=builtin_modules", "--config.data.seq_len=32",
        "--config.task.kind=sequence_classification", "--config.task.max_train_examples=64",
        "--config.train.steps=2", "--config.train.batch_size=4", "--config.train.log_every=1",
        "--config.train.eval_every=2", "--config.metrics.tensorboard=False",
        "--config.metrics.device_peak_tflops=1.0", "--config.parallel.mesh.data=1",
        "--config.parallel.num_devices=1", f"--config.data.data_dir={tmp_path / 'tfds'}")
    assert rc == 0, err
    assert "initialised parameters from" in out and "freshly initialised: task_head" in out
    assert "not used from the checkpoint: head/" in out
    final = [json.loads(x) for x in open(tmp_path / "ft" / "metrics.jsonl")
             if "eval_accuracy" in x][-1]
    assert 0.0 <= final["eval_accuracy"] <= 1.0 and final["eval_examples"] > 0
