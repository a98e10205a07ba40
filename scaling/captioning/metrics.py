"""Caption metrics: corpus BLEU-4, and attribute exact-match on the built-in shapes set.

BLEU (Papineni et al. 2002): for n = 1..4, each hypothesis n-gram count is clipped to its
largest count in any one reference; clipped counts and hypothesis n-gram counts are summed over
the corpus, and BLEU = BP · exp(mean_n log p_n) with brevity penalty BP = exp(1 - r / c) when
the hypotheses' total length c is below r, the sum of each hypothesis's closest reference
length (ties: the shorter). A hypothesis shorter than n has no n-grams (nltk counts one
unmatched n-gram there instead; sacrebleu and mteval do as here). Any p_n = 0 gives BLEU 0.

Shapes exact-match: a caption of scaling.data.shapes's grammar ("a SIZE COLOUR SHAPE RELATION
a SIZE COLOUR SHAPE and ...") names objects; `parse_objects` reads each SHAPE word with the
SIZE and COLOUR words since the previous one. An image is an exact match when the set of
(size, colour, shape) named equals the set drawn (sets: the caption's chain names the middle
objects twice). Held-out recall asks only whether each drawn object whose (colour, shape) is in
shapes.HELD_OUT is named with that colour and shape; naming everything would game it, so read
it next to exact-match. The baselines are image-independent: one constant prediction for
every image (`constant_baselines`).
"""
from __future__ import annotations

import collections
import math
import re
from typing import Iterable, Sequence

import numpy as np

from scaling.data import shapes
from scaling.data.shapes import COLOURS, HELD_OUT, SHAPES, SIZES

Obj = tuple  # (size, colour, shape); a part the caption did not say is None
ATTRIBUTES = ("size", "colour", "shape")


# --- BLEU ---------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def bleu_tokens(text: str) -> list[str]:
    """The tokens BLEU compares: lowercased words, each punctuation mark its own token."""
    return _WORD.findall(text.lower())


def _tokens(text) -> list[str]:
    """A caption string is split on whitespace; a token sequence is taken as it is."""
    return text.split() if isinstance(text, str) else list(text)


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence, references: Sequence[Sequence],
                max_order: int = 4) -> float:
    """Corpus BLEU-`max_order` in [0, 1] (module docstring).

    Args:
      hypotheses: one caption per image, a string (split on whitespace) or a token list.
      references: per image, a non-empty list of reference captions (strings or token lists).

    Returns:
      BLEU as a fraction (multiply by 100 for the usual scale); 0.0 for an empty corpus.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"corpus_bleu: {len(hypotheses)} hypotheses but "
                         f"{len(references)} reference lists; give one list per hypothesis")
    matches, totals = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp, refs = _tokens(hyp), [_tokens(r) for r in refs]
        if not refs:
            raise ValueError("corpus_bleu: a hypothesis has no reference; give at least one")
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_order + 1):
            counts = _ngrams(hyp, n)
            most = collections.Counter()
            for r in refs:
                most |= _ngrams(r, n)  # elementwise max over the references
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += sum(counts.values())
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_order
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


# --- shapes attributes --------------------------------------------------------------------
def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def parse_objects(caption: str) -> list[Obj]:
    """The objects a shapes caption names, in order: [(size, colour, shape), ...].

    Each SHAPE word closes an object with the last SIZE and COLOUR words since the previous
    SHAPE (None when there was none); every other word is ignored.
    """
    objects, size, colour = [], None, None
    for word in _text(caption).lower().split():
        if word in SIZES:
            size = word
        elif word in COLOURS:
            colour = word
        elif word in SHAPES:
            objects.append((size, colour, word))
            size = colour = None
    return objects


def shapes_object_sets(seed: int, split: str, image_size: int, num: int) -> list[set[Obj]]:
    """The object sets of the first `num` images of a shapes split, regenerated from the seeds
    (scaling.data.shapes.sample_objects, as make_example draws them) without rendering."""
    out = []
    for index in range(num):
        rng = np.random.default_rng(shapes.example_seed(seed, split, index))
        out.append({(o.size, o.colour, o.shape)
                    for o in shapes.sample_objects(rng, image_size, split)})
    return out


def true_objects(objects: dict) -> set[Obj]:
    """An example's 'objects' feature {'size': [...], 'colour': [...], 'shape': [...]} -> set."""
    return {(_text(s), _text(c), _text(h))
            for s, c, h in zip(objects["size"], objects["colour"], objects["shape"])}


def score_objects(predicted: Iterable[set[Obj]], truth: Iterable[set[Obj]]) -> dict:
    """Attribute metrics of predicted object sets against the drawn ones, over a split.

    Returns:
      {'exact_match': fraction of images whose named set equals the drawn set,
       'size' / 'colour' / 'shape': fraction of images whose set of that attribute's values
         named equals the drawn one (per-attribute exact-match),
       'object_recall': fraction of drawn objects (distinct per image) named exactly,
       'held_out_recall': fraction of drawn held-out-pair objects named with their colour
         and shape (nan when there are none),
       'images': how many images}.
    """
    images = exact = recalled = drawn = held_hit = held = 0
    attr = dict.fromkeys(ATTRIBUTES, 0)
    for pred, true in zip(predicted, truth):
        pred, true = set(pred), set(true)
        images += 1
        exact += pred == true
        for i, name in enumerate(ATTRIBUTES):
            attr[name] += {o[i] for o in pred} == {o[i] for o in true}
        recalled += len(pred & true)
        drawn += len(true)
        named_pairs = {(c, s) for _, c, s in pred}
        for _, c, s in true:
            if (c, s) in HELD_OUT:
                held += 1
                held_hit += (c, s) in named_pairs
    if images == 0:
        raise ValueError("score_objects: no images to score")
    return {"exact_match": exact / images,
            **{name: attr[name] / images for name in ATTRIBUTES},
            "object_recall": recalled / max(drawn, 1),
            "held_out_recall": held_hit / held if held else float("nan"),
            "images": images}


def caption_scores(captions: Sequence[str], objects: Sequence[dict]) -> dict:
    """score_objects of generated captions against examples' 'objects' features."""
    return score_objects([set(parse_objects(c)) for c in captions],
                         [true_objects(o) for o in objects])


def _most_frequent(values: Iterable[frozenset]) -> frozenset:
    """The most frequent value; ties go to the smallest in sorted order (deterministic)."""
    counts = collections.Counter(values)
    top = max(counts.values())
    return min((v for v, c in counts.items() if c == top), key=lambda v: sorted(map(str, v)))


def best_constants(object_sets: Sequence[set[Obj]]) -> dict:
    """The constant predictions that maximise each metric's exact-match on these images.

    Returns {'objects': the most frequent object set, 'size' / 'colour' / 'shape': the most
    frequent set of that attribute's values}.
    """
    sets = [frozenset(s) for s in object_sets]
    out = {"objects": _most_frequent(sets)}
    for i, name in enumerate(ATTRIBUTES):
        out[name] = _most_frequent(frozenset(o[i] for o in s) for s in sets)
    return out


def score_constants(constants: dict, truth: Sequence[set[Obj]]) -> dict:
    """score_objects of one constant prediction for every image; each per-attribute entry
    scores that attribute's own best constant (best constant per attribute)."""
    truth = [set(t) for t in truth]
    scores = score_objects([constants["objects"]] * len(truth), truth)
    for i, name in enumerate(ATTRIBUTES):
        scores[name] = sum(set(constants[name]) == {o[i] for o in t} for t in truth) / len(truth)
    return scores


def constant_baselines(train: Sequence[set[Obj]], validation: Sequence[set[Obj]]) -> dict:
    """The image-independent baselines, scored on `validation` (the images being scored).

    'train_choice': the constants chosen on train (what a model that ignores the image would
    learn). Train never shows a held-out pair, so its exact-match and held-out recall on
    validation are 0 by construction. 'oracle': the constants chosen on the scored images
    themselves, the best any image-independent prediction can score there: the honest bar.
    """
    return {"train_choice": score_constants(best_constants(train), validation),
            "oracle": score_constants(best_constants(validation), validation)}
