"""`scaling caption --workdir RUN [--image PNG ...] [--split validation --limit N] [--beam K]`.

Captions images with the latest (or --step) checkpoint of a captioning run: greedy with
--beam 1 (the default), else beam search of width K with GNMT length penalty
--length-penalty. With --image, prints one caption per file. Without, captions the first
--limit images of --split of the run's dataset and prints BLEU-4 against their reference
captions; on the built-in shapes set also the attribute exact-match, held-out recall and the
image-independent baselines (scaling/captioning/metrics.py). The figures are also written
as JSON to RUN/caption_eval.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

BATCH = 64  # images decoded at once (the last batch is padded to this, so one compile)


def _error(message: str) -> int:
    print(f"scaling caption: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling caption", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a captioning run directory")
    parser.add_argument("--image", nargs="+", default=None, metavar="PNG",
                        help="image files to caption (default: the --split of the dataset)")
    parser.add_argument("--split", default="validation", help="dataset split to evaluate")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images")
    parser.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="GNMT alpha of beam search")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    args = parser.parse_args(argv)
    if args.beam < 1:
        return _error(f"--beam: {args.beam}; use 1 (greedy) or more")
    if args.limit is not None and args.limit < 1:
        return _error(f"--limit: {args.limit}; use at least 1")

    from scaling import storage  # noqa: PLC0415

    config_path = storage.join(args.workdir, "config.json")
    if not storage.path(config_path).is_file():
        return _error(f"--workdir: no config.json in {args.workdir!r}; "
                      "is it a training run directory?")
    import ml_collections  # noqa: PLC0415

    from scaling.models import model_spec  # noqa: PLC0415

    config = ml_collections.ConfigDict(json.loads(storage.read_text(config_path)))
    spec = model_spec(config)
    if spec.family != "captioning":
        return _error(f"model.family: captioning needs a captioning run, this run is "
                      f"{spec.family!r}")
    from scaling.data import images as images_lib  # noqa: PLC0415

    files = []
    for path in args.image or []:
        try:
            files.append(images_lib.load_png(path))
        except (OSError, ValueError) as e:
            return _error(f"--image: cannot read {path!r} as an image ({e})")

    from scaling import checkpoint  # noqa: PLC0415
    try:
        state, _, step = checkpoint.load(args.workdir,
                                         checkpoint.abstract_train_state(spec, config), args.step)
    except FileNotFoundError as e:
        return _error(f"--workdir: {e}; train with checkpoints first")

    from scaling.data import make_tokenizer  # noqa: PLC0415
    tok = make_tokenizer(config.data)
    d = config.data
    prep = lambda image: images_lib.preprocess(  # noqa: E731
        image, spec.image_size, tuple(d.image_mean), tuple(d.image_std))
    caption = _captioner(spec, state.params, tok, args,
                         max_len=min(d.target_len or d.seq_len, spec.max_positions))
    search = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.length_penalty}"
    print(f"# {spec.name}, step {step}, {search}", file=sys.stderr)
    if args.image:
        for path, text in zip(args.image, caption([prep(x) for x in files])):
            print(f"{path}\t{text}")
        return 0
    report = _evaluate(config, args, caption, prep)
    report = {"step": step, "search": search, **report}
    storage.write_text_atomic(storage.join(args.workdir, "caption_eval.json"),
                              json.dumps(_no_nan(report), indent=2) + "\n")
    _print_report(report)
    return 0


def _captioner(spec, params, tok, args, max_len: int):
    """images [n, S, S, 3] -> n caption strings, in batches of BATCH."""
    import numpy as np  # noqa: PLC0415

    from scaling.captioning import decode  # noqa: PLC0415
    from scaling.models import build_model  # noqa: PLC0415
    model = build_model(spec)
    ids = dict(bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, max_len=max_len)

    def caption(images):
        out = []
        for start in range(0, len(images), BATCH):
            chunk = np.stack(images[start:start + BATCH])
            padded = np.zeros((BATCH,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            if args.beam == 1:
                rows = decode.greedy(model, params, padded, **ids)
            else:
                rows, _ = decode.beam_search(model, params, padded, beam_size=args.beam,
                                             length_penalty=args.length_penalty, **ids)
            out += [tok.decode(decode.caption_ids(r, tok.eos_id, tok.pad_id))
                    for r in rows[:len(chunk)]]
        return out
    return caption


def _evaluate(config, args, caption, prep) -> dict:
    """Captions the split's first --limit images and scores them (module docstring)."""
    from scaling.captioning import metrics  # noqa: PLC0415
    from scaling.data import captions as captions_lib  # noqa: PLC0415

    source = captions_lib.open_split(config, args.split)
    n = len(source) if args.limit is None else min(args.limit, len(source))
    images, references, objects = [], [], []
    shapes = config.data.dataset == captions_lib.SHAPES
    for i in range(n):
        image, refs = source[i]
        images.append(prep(image))
        references.append(refs)
        if shapes:
            objects.append(source.records[i]["objects"])
    hypotheses = caption(images)
    report = {"split": args.split, "images": n,
              "bleu4": metrics.corpus_bleu([metrics.bleu_tokens(h) for h in hypotheses],
                                           [[metrics.bleu_tokens(r) for r in refs]
                                            for refs in references]),
              "examples": [{"caption": h, "references": r}
                           for h, r in zip(hypotheses[:5], references[:5])]}
    if shapes:
        seed, num_train, _ = captions_lib.shapes_fields(config.data)
        train = metrics.shapes_object_sets(seed, "train", int(config.model.image_size),
                                           num_train)
        truth = [metrics.true_objects(o) for o in objects]
        report["shapes"] = metrics.caption_scores(hypotheses, objects)
        report["baselines"] = metrics.constant_baselines(train, truth)
    return report


def _no_nan(x):
    """NaN (e.g. held-out recall with no held-out object) -> null: JSON has no NaN."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def _print_report(report: dict) -> None:
    for example in report["examples"]:
        print(f"{example['caption']}\t(reference: {example['references'][0]})")
    print(f"{report['split']}: {report['images']} images, BLEU-4 {100 * report['bleu4']:.2f}")
    if "shapes" not in report:
        return
    rows = [("model", report["shapes"])] + [(f"constant ({k})", v)
                                            for k, v in report["baselines"].items()]
    keys = ("exact_match", "size", "colour", "shape", "object_recall", "held_out_recall")
    print(f"{'shapes':30}" + "".join(f"{k:>16}" for k in keys))
    for name, scores in rows:
        print(f"{name:30}" + "".join(f"{scores[k]:16.3f}" for k in keys))
