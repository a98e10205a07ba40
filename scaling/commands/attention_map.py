"""`scaling attention-map --workdir RUN --image PNG [--image PNG ...] [--out PATH]`.

Captions each image greedily with the run's latest checkpoint (or --step) and writes one
figure: per image, the image with its caption, then for every generated word the decoder's
cross-attention over the image grid overlaid on the image, and, when the model has the SAGAN
module, its self-attention weights at the --query cell. Images come from files (--image) or
from the run's dataset (--split validation --index I [--index J ...]). Prints the figure's path.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

MEAN = "mean"  # as scaling.captioning.attention_maps.MEAN (not imported here: it loads JAX)

DEFAULT_OUT = "docs/attention_map.png"


def _layer_or_head(text: str):
    return MEAN if text == MEAN else int(text)


def _query(text: str) -> tuple[int, int]:
    y, x = (int(v) for v in text.split(","))
    return y, x


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scaling attention-map",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a captioning run directory")
    parser.add_argument("--image", action="append", default=[],
                        help="an image file (PNG, JPEG); repeat for one row per image")
    parser.add_argument("--split", default=None,
                        help="take images from this split of the run's dataset (validation)")
    parser.add_argument("--index", action="append", type=int, default=[],
                        help="with --split: the example index; repeat for more rows")
    parser.add_argument("--out", default=DEFAULT_OUT, help="the figure's path (PNG)")
    parser.add_argument("--layer", type=_layer_or_head, default=-1,
                        help="decoder layer of the cross-attention (default -1: the last; "
                             "see attention_maps.select), or 'mean' over layers")
    parser.add_argument("--head", type=_layer_or_head, default=MEAN,
                        help="attention head, or 'mean' (default)")
    parser.add_argument("--query", type=_query, default=None,
                        help="Y,X grid cell for the SAGAN weights (default: the centre)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="longest caption in tokens (default data.target_len)")
    parser.add_argument("--interpolation", choices=("bilinear", "nearest"), default="bilinear",
                        help="how maps are upsampled to the image (nearest shows the cells)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    return parser.parse_args(argv)


def _error(message: str) -> int:
    print(f"scaling attention-map: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    args = parse(argv)
    from scaling import storage  # noqa: PLC0415

    config_path = storage.join(args.workdir, "config.json")
    if not storage.path(config_path).is_file():
        return _error(f"--workdir: no config.json in {args.workdir!r}; is it a training run "
                      "directory?")
    if bool(args.image) == bool(args.split):
        return _error("--image / --split: give image files (--image PNG) or a split of the "
                      "run's dataset (--split validation --index I), one of the two")
    if args.split and not args.index:
        return _error("--index: --split needs at least one example index (--index 0)")
    missing = [p for p in args.image if not storage.path(p).is_file()]
    if missing:
        return _error(f"--image: no such file {missing[0]!r}")

    import ml_collections  # noqa: PLC0415  (after argument errors, which need no JAX)

    from scaling import checkpoint  # noqa: PLC0415
    from scaling.data import make_tokenizer  # noqa: PLC0415
    from scaling.data import images as images_lib  # noqa: PLC0415
    from scaling.models import build_model, model_spec  # noqa: PLC0415

    config = ml_collections.ConfigDict(json.loads(storage.read_text(config_path)))
    spec = model_spec(config)
    if spec.family != "captioning":
        return _error(f"model.family: attention maps need a captioning model, this run is "
                      f"{spec.family!r}")
    problem = _check_selection(spec, args.layer, args.head, args.query)
    if problem:
        return _error(problem)
    try:
        state, _, step = checkpoint.load(args.workdir,
                                         checkpoint.abstract_train_state(spec, config), args.step)
    except FileNotFoundError as e:
        return _error(f"--workdir: {e}; train with checkpoints first")
    max_len = args.max_len or min(int(config.data.get("target_len", spec.max_positions)),
                                  spec.max_positions)
    try:
        pixels = (_split_images(config, args.split, args.index) if args.split
                  else [images_lib.load_png(p) for p in args.image])
        path = write_figure(build_model(spec), state.params, make_tokenizer(config.data),
                            pixels, out=args.out, image_size=spec.image_size,
                            mean=config.data.image_mean, std=config.data.image_std,
                            max_len=max_len, layer=args.layer, head=args.head,
                            query=args.query, interpolation=args.interpolation,
                            title=f"{spec.name}, step {step}")
    except ValueError as e:  # an index, layer, head, query or length outside the model
        return _error(str(e))
    print(path)
    return 0


def _check_selection(spec, layer, head, query) -> str | None:
    """What is wrong with --layer, --head or --query for this model (None if nothing)."""
    from scaling.nn.vision import backbone_grid  # noqa: PLC0415

    for flag, value, size in (("--layer", layer, spec.decoder_layers),
                              ("--head", head, spec.num_heads)):
        if value != MEAN and not -size <= value < size:
            return f"{flag}: {value} is outside the model's {size}; use 0..{size - 1} or mean"
    if query is not None:
        if not spec.image_attention:
            return ("--query: the model has no SAGAN module (model.image_attention is "
                    "false), so there are no self-attention weights to show")
        rows, cols = backbone_grid(spec.image_size, spec.image_size, len(spec.backbone_widths))
        if not (0 <= query[0] < rows and 0 <= query[1] < cols):
            return (f"--query: {query[0]},{query[1]} is outside the {rows}x{cols} feature "
                    f"grid; use 0 <= Y < {rows}, 0 <= X < {cols}")
    return None


def write_figure(model, params, tokenizer, pixels, *, out: str, image_size: int, mean, std,
                 max_len: int, layer=-1, head=MEAN, query=None,
                 interpolation: str = "bilinear", title: str = "") -> str:
    """Caption uint8 images greedily, draw their attention (attention_maps.plot_attention) to
    `out`, and return its path."""
    from scaling.captioning import attention_maps as M  # noqa: PLC0415
    from scaling.captioning.decode import greedy  # noqa: PLC0415
    from scaling.data import images as images_lib  # noqa: PLC0415

    shown = [images_lib.resize(p, image_size) for p in pixels]  # what the model sees
    images = np.stack([images_lib.preprocess(p, image_size, mean, std) for p in pixels])
    ids = greedy(model, params, images, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                 pad_id=tokenizer.pad_id, max_len=max_len)
    rows, cols = M.grid_shape(model, image_size)
    query = query if query is not None else (rows // 2, cols // 2)
    words, maps, sagan = [], [], []
    for image, caption in zip(images, np.asarray(ids)):
        caption = _until_eos(caption, tokenizer.eos_id, tokenizer.pad_id)
        # A caption that is EOS at once still gets one panel: where the EOS looked.
        caption = caption if len(caption) else np.array([tokenizer.eos_id], np.int32)
        words.append([tokenizer.decode([int(i)]).strip() or f"<{int(i)}>" for i in caption])
        maps.append(M.select(M.cross_attention_maps(model, params, image, caption,
                                                    bos_id=tokenizer.bos_id), layer, head))
        sagan.append(M.sagan_map(model, params, image, query) if model.image_attention
                     else None)
    directory = os.path.dirname(out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    label = f"cross-attention: layer {layer}, head {head}"
    M.plot_attention(shown, words, maps, out, sagan=sagan if model.image_attention else None,
                     query=query, title=f"{title}; {label}" if title else label,
                     interpolation=interpolation)
    return out


def _until_eos(ids, eos_id: int, pad_id: int):
    """The caption's ids before its first EOS (pad dropped)."""
    out = []
    for i in ids:
        if i == eos_id:
            break
        if i != pad_id:
            out.append(i)
    return np.asarray(out, np.int32)


def _split_images(config, split: str, indices: list[int]):
    """uint8 images of examples `indices` of `split` of the run's dataset."""
    from scaling.data.captions import open_split  # noqa: PLC0415
    from scaling.data.images import decode  # noqa: PLC0415

    source = open_split(config, split)
    bad = [i for i in indices if not 0 <= i < len(source)]
    if bad:
        raise ValueError(f"--index: {bad[0]} is outside the {len(source)} examples of split "
                         f"{split!r}")
    return [decode(source[i][0]) for i in indices]
