"""Published tokenizer kinds (data.tokenizer=gpt2_bpe:, roberta_bpe:, wordpiece[_cased]:,
sentencepiece_model:, hf:) against independent encoders of the same files.

No network here, so each test first trains a small tokenizer of that kind with the
`tokenizers` / `sentencepiece` trainers and saves it in the standard files (vocab.json +
merges.txt, vocab.txt, .model, tokenizer.json). The reference encodings come from the
`transformers` fast tokenizers (GPT2/Roberta/BertTokenizerFast, built from those files by
their own code) and from the `tokenizers` library's SentencePiece importer.
"""
import math
import sys

import numpy as np
import pytest
from ml_collections import ConfigDict

from scaling.data import check_vocab_fits, make_tokenizer, tokenizer_vocab_size, validate_data_config

TRAIN = [
    "The quick brown fox jumps over the lazy dog. Il était une fois, à Paris...",
    "def main(argv):\n    return sum(x ** 2 for x in range(10))  # squares",
    "Naïve café owners sell crème brûlée for €4.50; ÜBER-größe Straße, 東京 and Ελλάδα.",
    "Numbers: 3.14159, 2.71828, 1,000,000 and emoji 🙂🚀 in    spaced   text\n\nnew paragraph",
] * 20
SAMPLE = ("The lazy café dog said: “Bonjour!” — then jumped 3.5 m over 東京's fence 🙂.\n"
          "  Indented code: x = [i ** 2 for i in range(7)]  # tail  ")


def _data(tokenizer: str, objective: str = "causal_lm") -> ConfigDict:
    return ConfigDict({"tokenizer": tokenizer, "sp_vocab_size": 1024, "objective": objective})


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """vocab.json + merges.txt of a byte-level BPE with GPT-2's and RoBERTa's specials."""
    from tokenizers import ByteLevelBPETokenizer
    directory = tmp_path_factory.mktemp("bpe")
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(TRAIN, vocab_size=600, min_frequency=2, special_tokens=[
        "<s>", "<pad>", "</s>", "<unk>", "<|endoftext|>", "<mask>"])
    tok.save_model(str(directory))
    return directory


@pytest.fixture(scope="module")
def wordpiece_vocab(tmp_path_factory):
    from tokenizers import BertWordPieceTokenizer
    directory = tmp_path_factory.mktemp("wp")
    paths = {}
    for lowercase in (True, False):
        tok = BertWordPieceTokenizer(lowercase=lowercase)
        tok.train_from_iterator(TRAIN, vocab_size=400, min_frequency=1)
        sub = directory / ("uncased" if lowercase else "cased")
        sub.mkdir()
        tok.save_model(str(sub))
        paths[lowercase] = sub / "vocab.txt"
    return paths


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    import sentencepiece as spm
    prefix = tmp_path_factory.mktemp("spm") / "spiece"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAIN), model_prefix=str(prefix), vocab_size=400,
        model_type="unigram", byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        control_symbols=["<sep>", "<cls>", "<mask>"], hard_vocab_limit=False, minloglevel=2)
    return str(prefix) + ".model"


def _ours(name: str, text: str = SAMPLE) -> list[int]:
    return make_tokenizer(_data(name)).encode(text).tolist()


def test_gpt2_bpe_matches_transformers(bpe_dir):
    from transformers import GPT2TokenizerFast
    ref = GPT2TokenizerFast.from_pretrained(str(bpe_dir))  # reads vocab.json + merges.txt
    ours = make_tokenizer(_data(f"gpt2_bpe:{bpe_dir}"))
    for text in (SAMPLE, TRAIN[2], " leading space", "a<|endoftext|>b"):
        assert ours.encode(text).tolist() == ref(text)["input_ids"], text
    assert ours.decode(ours.encode(SAMPLE)) == SAMPLE  # byte-level BPE is lossless
    eot = ref.convert_tokens_to_ids("<|endoftext|>")
    assert (ours.eos_id, ours.pad_id, ours.mask_id) == (eot, eot, None)
    assert ours.vocab_size == len(ref)


def test_roberta_bpe_matches_transformers(bpe_dir):
    from tokenizers import AddedToken
    from transformers import RobertaTokenizerFast
    # RoBERTa's published tokenizer.json strips the space before <mask> ("the <mask>" ->
    # "the", "<mask>"); built from the two files alone, transformers needs to be told.
    ref = RobertaTokenizerFast.from_pretrained(
        str(bpe_dir), mask_token=AddedToken("<mask>", lstrip=True, special=True))
    ours = make_tokenizer(_data(f"roberta_bpe:{bpe_dir}"))
    for text in (SAMPLE, TRAIN[1], "fill the <mask> here"):
        assert ours.encode(text).tolist() == ref(text, add_special_tokens=False)["input_ids"]
    assert (ours.bos_id, ours.pad_id, ours.eos_id, ours.mask_id) == (
        ref.cls_token_id, ref.pad_token_id, ref.sep_token_id, ref.mask_token_id)
    assert ours.pad_id == 1  # RoBERTa's <pad> (trained in that order): not 0


@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_matches_transformers(wordpiece_vocab, lowercase):
    from transformers import BertTokenizerFast
    vocab = wordpiece_vocab[lowercase]
    ref = BertTokenizerFast.from_pretrained(str(vocab.parent), do_lower_case=lowercase)
    kind = "wordpiece" if lowercase else "wordpiece_cased"
    # a vocab.txt path or its directory
    for name in (f"{kind}:{vocab}", f"{kind}:{vocab.parent}"):
        ours = make_tokenizer(_data(name))
        for text in (SAMPLE, TRAIN[2], "[MASK] token [SEP]"):
            assert ours.encode(text).tolist() == ref(text, add_special_tokens=False)["input_ids"]
    assert (ours.pad_id, ours.cls_id, ours.sep_id, ours.eos_id, ours.mask_id) == (
        ref.pad_token_id, ref.cls_token_id, ref.sep_token_id, ref.sep_token_id,
        ref.mask_token_id)


def test_sentencepiece_model_matches_tokenizers_importer(spm_model, monkeypatch):
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import SentencePieceUnigramTokenizer
    monkeypatch.setitem(sys.modules, "sentencepiece_model_pb2", sentencepiece_model_pb2)
    ref = SentencePieceUnigramTokenizer.from_spm(spm_model)
    ours = make_tokenizer(_data(f"sentencepiece_model:{spm_model}"))
    for text in (SAMPLE.replace("  ", " ").strip(), TRAIN[0], TRAIN[2]):
        assert ours.encode(text).tolist() == ref.encode(text).ids, text
    pieces = ref.get_vocab_size()
    # pad 0, eos 1, <sep>/<cls>/<mask> pieces; T5-style sentinels appended after the pieces
    assert (ours.pad_id, ours.eos_id) == (0, 1)
    assert (ours.sep_id, ours.cls_id, ours.mask_id) == tuple(
        ref.token_to_id(p) for p in ("<sep>", "<cls>", "<mask>"))
    assert ours.sentinel_ids == list(range(pieces, pieces + 100))
    assert ours.vocab_size == pieces + 100


def test_hf_tokenizer_json_file_or_dir(bpe_dir, tmp_path):
    from transformers import GPT2TokenizerFast
    ref = GPT2TokenizerFast.from_pretrained(str(bpe_dir))  # reads vocab.json + merges.txt
    ref.save_pretrained(str(tmp_path))
    for name in (f"hf:{tmp_path}", f"hf:{tmp_path / 'tokenizer.json'}"):
        ours = make_tokenizer(_data(name))
        assert ours.encode(SAMPLE).tolist() == ref(SAMPLE)["input_ids"]
        assert ours.eos_id == ref.eos_token_id


def _true_bytes(tok, text: str) -> int:
    return int(tok.token_bytes[tok.encode(text)].sum())


def test_token_bytes_count_the_text(bpe_dir, spm_model, wordpiece_vocab):
    """Bytes per token, summed over an encoding, give back the text's UTF-8 length: exactly
    for byte-level BPE, SentencePiece and bytes; WordPiece (which drops spaces) within 10 %."""
    # SentencePiece's normaliser folds newlines and repeated spaces: keep the text single-spaced
    text = " ".join(SAMPLE.split())
    n = len(text.encode())
    for name in ("byte", f"gpt2_bpe:{bpe_dir}", f"roberta_bpe:{bpe_dir}",
                 f"sentencepiece_model:{spm_model}"):
        tok = make_tokenizer(_data(name))
        extra = 1 if name.startswith("sentencepiece") else 0  # the '▁' SentencePiece prepends
        assert _true_bytes(tok, text) == n + extra, name
        assert tok.token_bytes[tok.special_ids].sum() == 0
    tok = make_tokenizer(_data(f"wordpiece_cased:{wordpiece_vocab[False]}"))
    assert abs(_true_bytes(tok, text) - n) <= 0.1 * n


def test_vocab_and_specials_checked_against_model(bpe_dir, wordpiece_vocab):
    config = ConfigDict({"data": _data(f"gpt2_bpe:{bpe_dir}")})
    size = tokenizer_vocab_size(config.data)
    assert size == make_tokenizer(config.data).vocab_size > 256
    check_vocab_fits(config, size)
    with pytest.raises(ValueError, match=r"^model.vocab_size: .*data.tokenizer"):
        check_vocab_fits(config, size - 1)
    # GPT-2's BPE has no mask token: the mlm objective is refused, naming the field.
    full = _full_config(f"gpt2_bpe:{bpe_dir}", "mlm")
    with pytest.raises(ValueError, match=r"^data.tokenizer: .* has no mask token"):
        validate_data_config(full)
    validate_data_config(_full_config(f"wordpiece:{wordpiece_vocab[True]}", "mlm"))


def _full_config(tokenizer: str, objective: str):
    from scaling.config import base_config
    config = base_config()
    config.data.tokenizer, config.data.objective = tokenizer, objective
    return config


@pytest.mark.parametrize("name", ["gpt2_bpe:/nonexistent/gpt2", "wordpiece:/nope/vocab.txt",
                                  "sentencepiece_model:/nope/spiece.model", "bpe:/x"])
def test_missing_files_and_unknown_kinds_are_one_line(name):
    with pytest.raises(ValueError) as info:
        make_tokenizer(_data(name))
    message = str(info.value)
    assert message.startswith("data.tokenizer: ") and "\n" not in message


def test_bits_per_byte_of_a_byte_model_is_nats_over_ln2():
    """With the byte tokenizer every predicted token is one byte, so bpb = loss / ln 2."""
    from scaling.train_step import bits_per_byte
    assert math.isclose(bits_per_byte(loss_sum=693.1, num_bytes=1000.0),
                        693.1 / 1000 / math.log(2))
    assert bits_per_byte(loss_sum=1.0, num_bytes=0.0) is None
    table = make_tokenizer(_data("byte")).token_bytes
    assert table.sum() == 256 and np.all(table[:5] == 0)
