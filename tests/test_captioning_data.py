"""Captioning data and training: the batch against batch_spec, captions tokenized into
shifted decoder inputs and targets, images preprocessed, the words tokenizer, a short run()
that checkpoints and resumes, the one-line errors, and the image front end's FLOPs."""
import json
import os

import numpy as np
import pytest

from scaling import train
from scaling.batch_spec import batch_spec
from scaling.config_loading import load
from scaling.data import captions, images, make_pipeline, make_tokenizer, shapes, words
from scaling.spec import ModelSpec, image_front_end_flops

S, T = 16, 24  # a micro image side and the caption length


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def micro_config(data_dir, steps=4, **data):
    config = load("experiments/captioning.py:tiny")
    config.model.update(num_layers=1, num_decoder_layers=1, width=32, num_heads=2, mlp_dim=64,
                        image_size=S, backbone_widths=(8, 16), backbone_depths=(1, 1),
                        backbone_groups=4)
    config.data.update(dict(data_dir=data_dir, shapes_num_train=64, shapes_num_validation=16,
                            shuffle=False, target_len=T, seq_len=T), **data)
    config.train.update(steps=steps, batch_size=4, log_every=1, eval_every=steps,
                        eval_steps=1)
    config.metrics.update(tensorboard=False, device_peak_tflops=1.0)
    config.checkpoint.async_save = False
    config.parallel.update(num_devices=1)
    config.parallel.mesh.data = 1
    return config


def word_ids(caption):
    """Reference tokenization: position of each word in the sorted grammar vocabulary."""
    vocab = sorted({"a", "and", "left", "right", "of", "above", "below", *shapes.SIZES,
                    *shapes.COLOURS, *shapes.SHAPES})
    return [words.FIRST_WORD_ID + vocab.index(w) for w in caption.split()]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_batch_matches_the_spec_and_the_shapes_examples(data_dir, split):
    config = micro_config(data_dir)
    batch = next(make_pipeline(config, split))
    spec = batch_spec("captioning", 4, T, T, S)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == spec
    for row in range(4):  # unshuffled: row i is example i
        ex = shapes.make_example(0, split, row, S)
        mean, std = np.array(config.data.image_mean), np.array(config.data.image_std)
        np.testing.assert_allclose(batch["images"][row], (ex["image"] / 255.0 - mean) / std,
                                   rtol=1e-6, atol=1e-6)
        ids = [word_ids(c) for c in ex["captions"]]
        n = int(batch["weights"][row].sum())
        got = batch["targets"][row][:n - 1].tolist()
        assert got in ids if split == "train" else got == ids[0]
        assert batch["targets"][row][n - 1] == words.EOS_ID
        assert batch["decoder_inputs"][row][0] == words.BOS_ID
        assert batch["decoder_inputs"][row][1:n].tolist() == got  # shifted by one
        assert not batch["targets"][row][n:].any() and not batch["decoder_inputs"][row][n:].any()


def test_training_caption_is_drawn_per_epoch_and_augment_is_deterministic(data_dir):
    config = micro_config(data_dir, augment="crop")
    tok = make_tokenizer(config.data)
    maker = captions.CaptionExampleMaker(captions.open_split(config, "train"), tok, config, 0,
                                         train=True)
    a, b = maker((3, 0)), maker((3, 0))
    np.testing.assert_array_equal(a["images"], b["images"])   # a pure function of its seeds
    several = [i for i in range(64) if len(shapes.make_example(0, "train", i, S)["captions"]) > 1]
    drawn = {tuple(maker((several[0], e))["targets"]) for e in range(12)}
    assert len(drawn) == 2                                     # both captions turn up
    plain = captions.CaptionExampleMaker(captions.open_split(config, "train"), tok, config, 0,
                                         train=False)
    assert not np.array_equal(plain((3, 0))["images"], a["images"])


def test_crop_shifts_by_at_most_the_pad_and_never_flips():
    image = np.zeros((16, 16, 3), np.uint8)
    image[6, 4] = 200  # a bright pixel on the left half
    shifts = set()
    for seed in range(30):
        out = images.augment(image, np.random.default_rng(seed), "crop")
        y, x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
        assert abs(y - 6) <= images.CROP_PAD and abs(x - 4) <= images.CROP_PAD and x < 8
        assert 0.9 * 200 - 1 <= out.max() <= 1.1 * 200 + 1
        shifts.add((y, x))
    assert len(shifts) > 5
    assert images.augment(image, np.random.default_rng(0), "none") is image


def test_preprocess_resizes_and_normalises_png_bytes():
    image = np.random.default_rng(0).integers(0, 256, (20, 10, 3), dtype=np.uint8)
    from PIL import Image
    out = images.preprocess(shapes._png(image), 8, 0.5, 0.25)
    ref = np.asarray(Image.fromarray(image).resize((8, 8), Image.BILINEAR)) / 255.0
    np.testing.assert_allclose(out, (ref - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    assert out.shape == (8, 8, 3) and out.dtype == np.float32


def test_words_tokenizer():
    tok = words.WordTokenizer(words.build_vocabulary(["A red, circle", "a blue circle"]))
    assert tok.words == [",", "a", "blue", "circle", "red"]
    ids = tok.encode("a RED circle, a green one")
    assert ids.tolist() == [7, 10, 9, 6, 7, words.UNK_ID, words.UNK_ID]
    assert tok.decode([words.BOS_ID, *ids[:3], words.EOS_ID]) == "a red circle"
    assert tok.token_bytes[tok.encode("circle")[0]] == len(" circle")
    assert tok.token_bytes[:words.UNK_ID].sum() == 0
    # The shapes vocabulary from the grammar is every word of the generated captions.
    generated = [c for i in range(300) for c in shapes.make_example(1, "train", i, 32)["captions"]]
    assert words.build_vocabulary(generated) == words.shapes_words()


def test_run_writes_metrics_and_a_checkpoint_and_resumes(data_dir, tmp_path):
    workdir = tmp_path / "run"
    out = train.run(micro_config(data_dir, steps=3), str(workdir))
    assert np.isfinite(out["eval"]["eval_loss"]) and "eval_bpb" in out["eval"]
    assert out["unigram_entropy"] > 0
    assert os.path.isdir(workdir / "checkpoints" / "3")
    out = train.run(micro_config(data_dir, steps=5), str(workdir))
    assert out["start_step"] == 3
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert {r["step"] for r in records if "loss" in r} == {1, 2, 3, 4, 5}
    start = [r for r in records if r.get("event") == "run_start"][-1]
    spec = out["spec"]
    assert start["flops_per_token"] == spec.train_flops_per_sequence(T, T) / T


def test_shapes_grammar_longest_caption():
    tok = make_tokenizer(micro_config("").data)
    assert captions.longest_shapes_caption(tok) == 21  # 3 objects: 4 + 2 + 4 + 1 + 4 + 2 + 4


@pytest.mark.parametrize("change, message", [
    (dict(target_len=16, seq_len=16),
     "data.target_len: the shapes grammar's longest caption has 21 tokens"),
    (dict(augment="flip"), "data.augment: unknown 'flip'"),
    (dict(image_std=(0.2, 0.0, 0.2)), "data.image_std: must be positive"),
])
def test_bad_data_is_one_line_error(data_dir, change, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as e:
        train.validate(micro_config(data_dir, **change))
    assert "\n" not in str(e.value)


def test_caption_longer_than_the_decoder_positions(data_dir):
    config = micro_config(data_dir)
    config.model.max_len = 16
    with pytest.raises(ValueError, match="^data.target_len: captions of 24 tokens are longer "
                                         "than the decoder's 16 learned positions"):
        train.validate(config)


def test_image_smaller_than_the_backbone_stride():
    with pytest.raises(ValueError, match="^model.image_size: 2 is smaller than the backbone's "
                                         "total stride 4"):
        ModelSpec(family="captioning", image_size=2, backbone_widths=(8, 8, 8),
                  backbone_depths=(1, 1, 1))


def test_tfds_dataset_without_the_configured_keys(data_dir):
    """The shapes set read back as a plain TFDS dataset by name, with a wrong image key."""
    micro = micro_config(data_dir)
    next(make_pipeline(micro, "train"))  # prepares it
    name = f"scaling_shapes_captions/s0_{S}px_t64_v16"
    good = micro_config(data_dir, dataset=name, image_key="image", caption_key="captions")
    batch = next(make_pipeline(good, "validation"))
    ref = next(make_pipeline(micro, "validation"))
    for key in ref:
        np.testing.assert_array_equal(batch[key], ref[key])
    bad = micro_config(data_dir, dataset=name, image_key="picture", caption_key="captions")
    with pytest.raises(ValueError, match="^data.image_key: the dataset's records have no "
                                         "feature 'picture'; set data.image_key to one of "
                                         "'captions', 'image', 'objects'"):
        train.validate(bad)
    bad = micro_config(data_dir, dataset=name, caption_key="captions/text")
    with pytest.raises(ValueError, match="^data.caption_key: .* no feature 'captions/text'"):
        train.validate(bad)


def test_image_front_end_flops_hand_count():
    # 8 px image, widths (8, 16), one block each, projection to D = 32:
    stem = 2 * 8 * 8 * 9 * 3 * 8                      # 3x3, 3 -> 8 channels at 8x8
    stage0 = 2 * (2 * 8 * 8 * 9 * 8 * 8)              # two 3x3, 8 -> 8 at 8x8
    stage1 = (2 * 4 * 4 * 9 * 8 * 16 + 2 * 4 * 4 * 9 * 16 * 16  # stride 2: 4x4 grid
              + 2 * 4 * 4 * 8 * 16)                   # the 1x1 shortcut projection
    proj = 2 * 4 * 4 * 16 * 32
    assert image_front_end_flops(8, (8, 16), (1, 1), False, 32) == stem + stage0 + stage1 + proj
    # SAGAN on the 4x4 grid of 16 channels: q, k to 2 channels, v, o 16 x 16, then
    # scores [16 x 16] over 2 channels and values [16 x 16] over 16 channels.
    sagan = 2 * 16 * (2 * 16 * 2 + 2 * 16 * 16) + 2 * 16 * 16 * (2 + 16)
    assert (image_front_end_flops(8, (8, 16), (1, 1), True, 32)
            == stem + stage0 + stage1 + proj + sagan)


def test_captioning_flops_per_token_is_the_encoder_decoder_over_image_tokens():
    spec = ModelSpec(family="captioning", vocab_size=40, num_layers=2, num_decoder_layers=1,
                     width=32, num_heads=2, mlp_dim=64, image_size=8,
                     backbone_widths=(8, 16), backbone_depths=(1, 1))
    d, f, n, t = 32, 64, 16, 10  # image tokens: the 4x4 grid
    enc = 2 * (4 * d * d + 2 * d * f)
    dec = 1 * (8 * d * d + 2 * d * f) + 40 * d
    attn = 12 * d * (2 * n * n + 1 * (t * t + t * n))
    image = 3 * image_front_end_flops(8, (8, 16), (1, 1), False, d)
    expected = 6 * (enc * n + dec * t) + attn + image
    assert spec.image_tokens == n and spec.tokens_per_sequence(99, t) == t
    assert spec.flops_per_token(99, t) == pytest.approx(expected / t)


def test_compile_sizes_a_captioning_step(capsys):
    from scaling.commands import compile as compile_cmd
    argv = ["--config", "experiments/captioning.py:tiny", "--mesh", "data=1", "--json",
            "--config.model.width=32", "--config.model.num_heads=2", "--config.model.mlp_dim=64",
            "--config.model.num_layers=1", "--config.model.num_decoder_layers=1",
            "--config.model.scan_layers=False", "--config.model.image_size=16",
            "--config.model.backbone_widths=(8,16)", "--config.model.backbone_depths=(1,1)",
            "--config.model.backbone_groups=4", "--config.train.batch_size=4"]
    assert compile_cmd.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["memory_per_device"]["peak"] > 0


def test_params_counts_the_captioning_variants(capsys):
    from scaling.commands import params as params_cmd
    from scaling.models import model_spec
    from scaling.sizes import count_params
    assert params_cmd.main(["captioning", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"captioning:tiny", "captioning:base", "captioning:large"}
    for key, row in rows.items():
        spec = model_spec(load(f"experiments/captioning.py:{key.split(':')[1]}"))
        assert row["params"] == count_params(spec).backbone > 0
    assert rows["captioning:base"]["layers_text"] == "12 (6+6)"


def test_other_tokenizers_read_the_captions(data_dir):
    """The byte tokenizer on the same records: validation targets spell the first caption."""
    config = micro_config(data_dir, tokenizer="byte", target_len=128, seq_len=128)
    config.model.max_len = 128
    train.validate(config)  # the grammar's longest caption in bytes fits 128
    batch = next(make_pipeline(config, "validation"))
    tok = make_tokenizer(config.data)
    for row in range(2):
        caption = shapes.make_example(0, "validation", row, S)["captions"][0]
        assert tok.decode(batch["targets"][row]) == caption
        assert batch["weights"][row].sum() == len(caption.encode()) + 1


def test_caption_dropout_replaces_words_by_unk_in_training_only(data_dir):
    config = micro_config(data_dir, caption_dropout=0.5)
    tok = make_tokenizer(config.data)
    source = captions.open_split(config, "train")
    train_maker = captions.CaptionExampleMaker(source, tok, config, 0, train=True)
    eval_maker = captions.CaptionExampleMaker(source, tok, config, 0, train=False)
    dropped = kept = 0
    for i in range(32):
        ex = train_maker((i, 0))
        n = int(ex["weights"].sum())
        inputs, targets = ex["decoder_inputs"], ex["targets"]
        assert inputs[0] == words.BOS_ID and not inputs[n:].any()  # BOS and padding stay
        truth = [word_ids(c) for c in shapes.make_example(0, "train", i, S)["captions"]]
        assert targets[:n - 1].tolist() in truth  # the targets are never dropped
        same = inputs[1:n] == targets[:n - 1]
        assert (inputs[1:n][~same] == words.UNK_ID).all()
        dropped, kept = dropped + int((~same).sum()), kept + int(same.sum())
        plain = eval_maker((i, 0))
        assert (plain["decoder_inputs"][1:n] == plain["targets"][:n - 1]).all()
    assert 0.35 < dropped / (dropped + kept) < 0.65


def test_grey_images_have_no_colour_words(data_dir):
    config = micro_config(data_dir, shapes_grey_fraction=1.0)
    tok = make_tokenizer(config.data)
    maker = captions.CaptionExampleMaker(captions.open_split(config, "train"), tok, config, 0,
                                         train=True)
    for i in range(8):
        ex = maker((i, 0))
        image = ex["images"] * np.array(config.data.image_std) + np.array(config.data.image_mean)
        assert np.allclose(image[..., 0], image[..., 1]) and np.allclose(image[..., 1],
                                                                          image[..., 2])
        truth = shapes.make_example(0, "train", i, S)
        said = tok.decode(ex["targets"]).split()
        assert not set(said) & set(shapes.COLOURS)
        assert said in [[w for w in c.split() if w not in shapes.COLOURS]
                        for c in truth["captions"]]
