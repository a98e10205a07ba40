"""Where a captioner looks: its cross-attention over the image grid for every word, and the
SAGAN module's self-attention at one query position, as arrays and as a figure.

The weights come from one teacher-forced forward pass with the "attention_weights"
collection mutable (scaling.nn.layers.ATTENTION_WEIGHTS): every attention module then sows
its weights, recomputed from its q and k by the reference math, whatever kernel the model
runs. Image tokens are the backbone's grid cells in row-major order (grid_to_sequence), so
key s of the decoder's cross-attention is cell (s // X, s % X).

Axis letters: T caption words, L decoder layers, N heads, Y x X the backbone's grid.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scaling.nn.layers import ATTENTION_WEIGHTS
from scaling.nn.vision import backbone_grid

MEAN = "mean"


def grid_shape(model, image_size: int) -> tuple[int, int]:
    """(Y, X): the backbone's feature grid for an image_size x image_size image."""
    return backbone_grid(image_size, image_size, len(model.widths))


def sown_attention(model, params, images, decoder_inputs) -> dict:
    """One forward pass -> the "attention_weights" collection: {module path: {"weights": (w,)}}.

    Args:
      model: a Captioner; params: its 'params' collection.
      images: [B, S, S, 3] float32, preprocessed as in training.
      decoder_inputs: [B, T] int32 ids, BOS first.
    """
    _, state = _apply_fn(model)(params, jnp.asarray(images, jnp.float32),
                                jnp.asarray(decoder_inputs, jnp.int32))
    return jax.tree_util.tree_map(np.asarray, state[ATTENTION_WEIGHTS])


@functools.lru_cache(maxsize=16)
def _apply_fn(model):
    """model.apply with the weights sown, jitted once per model."""
    return jax.jit(lambda params, images, ids: model.apply(
        {"params": params}, {"images": images, "decoder_inputs": ids},
        mutable=[ATTENTION_WEIGHTS]))


def decoder_cross_weights(sown: dict) -> np.ndarray:
    """The decoder's cross-attention weights [L, B, N, T, S], layers in order, from
    `sown_attention`'s collection (layers unrolled as layer_i, or scanned and stacked)."""
    decoder = sown["decoder"]
    if "layers" in decoder:  # nn.scan: one entry stacked over layers on axis 0
        return np.asarray(decoder["layers"]["cross_attn"]["weights"][0])
    count = len([name for name in decoder if name.startswith("layer_")])
    return np.stack([decoder[f"layer_{i}"]["cross_attn"]["weights"][0] for i in range(count)])


def cross_attention_maps(model, params, image, caption_ids, *, bos_id: int) -> np.ndarray:
    """Cross-attention of every caption word over the image grid.

    The caption is teacher-forced: decoder inputs [BOS] + caption_ids[:-1], so the weights at
    query position t are those with which the decoder predicted caption_ids[t].

    Args:
      model: a Captioner; params: its 'params' collection.
      image: [S, S, 3] float32, preprocessed as in training.
      caption_ids: [T] int32 word ids (no BOS; cut at EOS or not, as the caller wants).
      bos_id: the tokenizer's BOS id.

    Returns:
      float32 [T, L, N, Y, X]: word t, decoder layer l, head n over grid cell (y, x); every
      [Y, X] map sums to 1.
    """
    caption_ids = np.asarray(caption_ids, np.int32).reshape(-1)
    t = len(caption_ids)
    if t < 1:
        raise ValueError("caption_ids: empty caption; give at least one word id")
    if t > model.spec.max_positions:
        raise ValueError(f"caption_ids: {t} words is longer than the decoder's positions "
                         f"(model.max_len {model.spec.max_positions}); shorten the caption")
    image = np.asarray(image, np.float32)
    inputs = np.concatenate([[bos_id], caption_ids[:-1]]).astype(np.int32)[None]
    weights = decoder_cross_weights(sown_attention(model, params, image[None], inputs))
    rows, cols = grid_shape(model, image.shape[0])
    maps = weights[:, 0].transpose(2, 0, 1, 3)  # [L, N, T, S] -> [T, L, N, S]
    return maps.reshape(*maps.shape[:3], rows, cols)


def sagan_weights(model, params, image) -> np.ndarray:
    """The SAGAN module's weights [Y, X, Y, X]: query cell (y, x) over key cells.

    Raises a one-line ValueError when the model has no such module (model.image_attention).
    """
    if not getattr(model, "image_attention", False):
        raise ValueError("model.image_attention: this model has no SAGAN self-attention "
                         "module; train with model.image_attention=True to see its weights")
    image = np.asarray(image, np.float32)
    sown = sown_attention(model, params, image[None], np.zeros((1, 1), np.int32))
    rows, cols = grid_shape(model, image.shape[0])
    return sown["image_attention"]["weights"][0][0].reshape(rows, cols, rows, cols)


def sagan_map(model, params, image, query: tuple[int, int]) -> np.ndarray:
    """[Y, X]: the SAGAN weights of query cell query=(y, x) over the grid (sums to 1)."""
    weights = sagan_weights(model, params, image)
    rows, cols = weights.shape[:2]
    y, x = query
    if not (0 <= y < rows and 0 <= x < cols):
        raise ValueError(f"query: ({y}, {x}) is outside the {rows}x{cols} feature grid; use "
                         f"0 <= y < {rows}, 0 <= x < {cols}")
    return weights[y, x]


def select(maps: np.ndarray, layer: int | str = -1, head: int | str = MEAN) -> np.ndarray:
    """[T, L, N, Y, X] -> [T, Y, X]: one decoder layer (or "mean" over layers), one head (or
    "mean" over heads). Negative indices count from the end.

    The default, the last decoder layer averaged over its heads, is what showed the grounding
    best on the built-in shapes set: the last layer's queries already carry the caption so
    far, and its heads put more of their weight on the cells of the object a colour or shape
    word names than the first layer's or the mean over layers do (which dilutes the last layer
    with the first's broader maps). Averaging over heads keeps every head that looks at the
    object, as heads split the job between them.
    """
    def pick(x, index, axis, name):
        if index == MEAN:
            return x.mean(axis=axis)
        size = x.shape[axis]
        if not isinstance(index, (int, np.integer)) or not -size <= index < size:
            raise ValueError(f"{name}: {index!r} is not 'mean' or an index below {size}")
        return np.take(x, index, axis=axis)
    return pick(pick(maps, head, 2, "head"), layer, 1, "layer")


def plot_attention(images: Sequence[np.ndarray], words: Sequence[Sequence[str]],
                   maps: Sequence[np.ndarray], path: str,
                   sagan: Sequence[np.ndarray | None] | None = None,
                   query: tuple[int, int] | None = None, title: str = "",
                   alpha: float = 0.8, interpolation: str = "bilinear"):
    """One row per image: the image with its caption, a panel per word (the image under the
    word's attention map, the word as the panel's title), then the SAGAN weights at the query
    cell (marked) when given. Writes a PNG to path and returns the matplotlib Figure.

    Args:
      images: per row, uint8 [h, w, 3]: the image the model saw (each map is stretched over it,
        cell (y, x) of a Y x X map on pixels [y·h/Y, (y+1)·h/Y) x [x·w/X, (x+1)·w/X)).
      words: per row, the caption's words (one per map).
      maps: per row, [T, Y, X] weights (T = len(words)); each panel is coloured from 0 to its
        own maximum, and as opaque (up to alpha) as the weight is high.
      sagan: per row, a [Y, X] map or None (no panel); None for no SAGAN panels at all.
      query: the (y, x) cell of the SAGAN maps, marked with a cross.
      interpolation: how a map is upsampled to the image: "bilinear" or "nearest" (the cells).
    """
    # Imported here: the rest of the module needs no plotting. A Figure on the Agg canvas,
    # not pyplot, so no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    if not (len(images) == len(words) == len(maps)):
        raise ValueError(f"plot_attention: {len(images)} images, {len(words)} captions and "
                         f"{len(maps)} map stacks; give one of each per row")
    sagan = list(sagan) if sagan is not None else [None] * len(images)
    for w, m in zip(words, maps):
        if len(w) != len(m):
            raise ValueError(f"plot_attention: {len(w)} words but {len(m)} maps; one map a word")
    cols = 1 + max(len(w) for w in words) + (1 if any(s is not None for s in sagan) else 0)
    fig = Figure(figsize=(1.6 * cols, 2.0 * len(images)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(len(images), cols, squeeze=False)

    def overlay(ax, image, heat, label, cmap="jet"):
        # Colour and opacity both grow with the weight (0 .. the map's own maximum), so the
        # image stays visible where the word does not look and is covered where it does.
        h, w = image.shape[:2]
        peak = max(float(np.max(heat)), 1e-12)
        ax.imshow(image, extent=(0, w, h, 0))
        ax.imshow(heat, extent=(0, w, h, 0), cmap=cmap, vmin=0.0, vmax=peak,
                  alpha=alpha * np.clip(heat / peak, 0.0, 1.0), interpolation=interpolation)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    for row, (image, caption, stack, sa) in enumerate(zip(images, words, maps, sagan)):
        axes = list(grid[row])
        first = axes.pop(0)
        first.imshow(image)
        first.set_title(_wrap(" ".join(caption)), fontsize=9)
        first.set_xticks([])
        first.set_yticks([])
        for word, heat in zip(caption, stack):
            overlay(axes.pop(0), image, heat, word)
        if sa is not None:
            ax = axes.pop()  # the last column
            overlay(ax, image, sa, "self-attention" + (f" at {query}" if query else ""),
                    cmap="magma")
            if query is not None:
                h, w = image.shape[:2]
                (rows_, cols_), (y, x) = sa.shape, query
                ax.plot((x + 0.5) * w / cols_, (y + 0.5) * h / rows_, marker="x",
                        markersize=10, markeredgewidth=2.5, color="white")
        for ax in axes:  # rows with shorter captions leave cells empty
            fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    return fig


def _wrap(text: str, width: int = 22) -> str:
    """Break a caption into lines of at most about `width` characters, at spaces."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])
