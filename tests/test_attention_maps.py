"""Attention maps of a tiny random captioner: shapes, grid order, selection, and the figure."""
import dataclasses

import jax
import numpy as np
import pytest

from scaling.captioning import attention_maps as M
from scaling.models.captioning import Captioner
from scaling.spec import ModelSpec

SIZE, BOS = 16, 2


@pytest.fixture(scope="module")
def captioner():
    spec = ModelSpec(family="encoder_decoder", vocab_size=32, num_layers=1,
                     num_decoder_layers=2, width=16, num_heads=4, mlp_dim=32, max_len=8,
                     kernels="reference")
    model = Captioner(spec, widths=(8, 8), depths=(1, 1), groups=4, image_attention=True)
    image = np.random.default_rng(0).normal(size=(SIZE, SIZE, 3)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), {"images": image[None],
                                                "decoder_inputs": np.zeros((1, 3), np.int32)})
    # SAGAN's gate starts at 0; open it so that its weights reach the decoder.
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.5 if "gamma" in jax.tree_util.keystr(p) else x, params["params"])
    return model, params, image


def test_maps_are_the_sown_weights_of_each_word_on_the_row_major_grid(captioner):
    model, params, image = captioner
    ids = [5, 6, 7, 8]
    maps = M.cross_attention_maps(model, params, image, ids, bos_id=BOS)
    assert maps.shape == (4, 2, 4, 8, 8)  # T, L, N, and a 16x16 image over two stages: 8x8
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)), 1.0, atol=1e-5)
    # Word t's map comes from query position t of the input [BOS] + ids: compare with a
    # direct apply on that input, key s = cell (s // 8, s % 8).
    sown = M.sown_attention(model, params, image[None],
                            np.array([[BOS, 5, 6, 7]], np.int32))
    w = sown["decoder"]["layer_1"]["cross_attn"]["weights"][0]  # [1, N, T, 64]
    np.testing.assert_allclose(maps[2, 1, 3, 5, 1], w[0, 3, 2, 5 * 8 + 1], rtol=1e-6)
    # Causal: the maps of the first words do not depend on the words after them.
    shorter = M.cross_attention_maps(model, params, image, ids[:2], bos_id=BOS)
    np.testing.assert_allclose(shorter, maps[:2], atol=1e-6)


def test_select_layers_and_heads(captioner):
    model, params, image = captioner
    maps = M.cross_attention_maps(model, params, image, [5, 6, 7], bos_id=BOS)
    np.testing.assert_allclose(M.select(maps), maps[:, -1].mean(axis=1), atol=1e-7)
    np.testing.assert_allclose(M.select(maps, layer="mean"), maps.mean(axis=(1, 2)), atol=1e-7)
    np.testing.assert_array_equal(M.select(maps, layer=-1, head=2), maps[:, 1, 2])
    np.testing.assert_allclose(M.select(maps, layer=0), maps[:, 0].mean(axis=1), atol=1e-7)
    with pytest.raises(ValueError, match="layer"):
        M.select(maps, layer=2)


def test_sagan_map_is_a_row_of_the_module_weights(captioner):
    model, params, image = captioner
    weights = M.sagan_weights(model, params, image)
    assert weights.shape == (8, 8, 8, 8)
    np.testing.assert_allclose(weights.sum(axis=(-2, -1)), 1.0, atol=1e-5)
    np.testing.assert_array_equal(M.sagan_map(model, params, image, (2, 5)), weights[2, 5])
    with pytest.raises(ValueError, match="query"):
        M.sagan_map(model, params, image, (8, 0))
    plain = Captioner(model.spec, widths=(8, 8), depths=(1, 1), groups=4)
    with pytest.raises(ValueError, match="model.image_attention"):
        M.sagan_map(plain, params, image, (0, 0))


def test_figure_has_the_image_a_panel_per_word_and_the_sagan_panel(captioner, tmp_path):
    model, params, image = captioner
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2)]
    words = [["a", "red", "circle"], ["a", "blue", "small", "square"]]
    maps = [M.select(M.cross_attention_maps(model, params, image, list(range(5, 5 + len(w))),
                                            bos_id=BOS)) for w in words]
    sagan = M.sagan_map(model, params, image, (2, 5))
    path = tmp_path / "attention.png"
    fig = M.plot_attention(pixels, words, maps, str(path), sagan=[sagan, sagan], query=(2, 5))
    assert path.is_file() and path.stat().st_size > 5_000
    # Row 1: image + 3 words + SAGAN; row 2: image + 4 words + SAGAN (no empty cells left).
    assert len(fig.axes) == (1 + 3 + 1) + (1 + 4 + 1)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:4] == ["a", "red", "circle"] and titles[4].startswith("self-attention")
    with pytest.raises(ValueError, match="one map a word"):
        M.plot_attention(pixels[:1], [["a"]], maps[:1], str(path))


class _Words:
    """A tokenizer stand-in: id i is the word w<i>; pad 0, eos 1, bos 2."""
    pad_id, eos_id, bos_id = 0, 1, 2

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def test_command_writes_the_figure_for_a_random_captioner(captioner, tmp_path):
    from scaling.commands import attention_map

    model, params, _ = captioner
    pixels = [np.random.default_rng(i).integers(0, 256, (24, 20, 3), dtype=np.uint8)
              for i in range(2)]
    out = tmp_path / "docs" / "map.png"
    path = attention_map.write_figure(model, params, _Words(), pixels, out=str(out),
                                      image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3,
                                      max_len=3, layer=-1, head="mean", query=(1, 2))
    assert path == str(out) and out.stat().st_size > 5_000


def test_command_rejects_bad_arguments_before_loading(tmp_path, capsys):
    from scaling.commands import attention_map

    assert attention_map.main(["--workdir", str(tmp_path), "--image", "x.png"]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert attention_map.main(["--workdir", str(tmp_path)]) == 2
    assert "--image / --split" in capsys.readouterr().err
    assert attention_map.main(["--workdir", str(tmp_path), "--image", "nope.png"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_command_checks_layer_head_and_query_against_the_model_before_loading():
    from scaling.commands.attention_map import _check_selection

    spec = ModelSpec(family="captioning", vocab_size=32, num_layers=1, num_decoder_layers=2,
                     width=16, num_heads=4, mlp_dim=32, max_len=8, image_size=16,
                     backbone_widths=(8, 8), backbone_depths=(1, 1), backbone_groups=4,
                     image_attention=True)
    assert _check_selection(spec, "mean", -1, (7, 7)) is None
    assert _check_selection(spec, 2, "mean", None).startswith("--layer: 2")
    assert _check_selection(spec, 0, 4, None).startswith("--head: 4")
    assert _check_selection(spec, 0, 0, (8, 0)).startswith("--query: 8,0 is outside the 8x8")
    no_sagan = dataclasses.replace(spec, image_attention=False)
    assert "no SAGAN module" in _check_selection(no_sagan, 0, 0, (0, 0))
