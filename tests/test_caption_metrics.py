"""Caption metrics: BLEU-4 against nltk and by hand; shapes exact-match and its baselines."""
import math
import warnings

import numpy as np
import pytest

from scaling.captioning.metrics import (bleu_tokens, caption_scores, constant_baselines,
                                        corpus_bleu, shapes_object_sets,
                                        parse_objects, score_objects, true_objects)
from scaling.data import shapes

nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")


def _nltk(hypotheses, references):
    with warnings.catch_warnings():  # nltk warns when a precision is 0 (and returns ~0)
        warnings.simplefilter("ignore")
        return nltk_bleu.corpus_bleu([[r.split() for r in refs] for refs in references],
                                     [h.split() for h in hypotheses])


CASES = {
    "identical": (["a small red circle"], [["a small red circle"]]),
    # Papineni et al.'s clipping: 'the' counts at most twice (reference 1).
    "clipping": (["the the the cat is on the mat"],
                 [["the cat is on the mat", "there is a cat on the mat"]]),
    "multi_reference": (
        ["it is a guide to action which ensures that the military always obeys the commands "
         "of the party", "he read the book because he was interested in world history"],
        [["it is a guide to action that ensures that the military will forever heed party "
          "commands", "it is the guiding principle which guarantees the military forces "
          "always being under the command of the party", "it is the practical guide for the "
          "army always to heed the directions of the party"],
         ["he was interested in world history because he read the book"]]),
    # Shorter than every reference (brevity penalty); the closest-length tie goes to the shorter.
    "short_hypotheses": (["a small red circle", "a large blue square left of"],
                         [["a small red circle left of a large blue square",
                           "a large blue square right of a small red circle"],
                          ["a large blue square left of a small", "a large blue square"]]),
    "no_4gram_match": (["a b c d", "e f g h"], [["a b c x"], ["e f x h"]]),
}


@pytest.mark.parametrize("name", CASES)
def test_bleu_equals_nltk(name):
    hyps, refs = CASES[name]
    np.testing.assert_allclose(corpus_bleu(hyps, refs), _nltk(hyps, refs), atol=1e-6)


def test_bleu_equals_nltk_on_random_corpora():
    rng = np.random.default_rng(0)
    words = "a b c".split()
    sent = lambda lo, hi: " ".join(rng.choice(words, rng.integers(lo, hi)))  # noqa: E731
    values = []
    for _ in range(20):
        n = int(rng.integers(1, 6))
        hyps = [sent(4, 12) for _ in range(n)]  # >= 4 tokens: see the next test for fewer
        refs = [[sent(3, 14) for _ in range(int(rng.integers(1, 5)))] for _ in range(n)]
        values.append(corpus_bleu(hyps, refs))
        np.testing.assert_allclose(values[-1], _nltk(hyps, refs), atol=1e-6)
    assert 0 < np.mean(values) < 1 and len(set(values)) > 10


def test_bleu_by_hand_with_a_hypothesis_shorter_than_four():
    """'a b' has no 3- or 4-grams (Papineni, sacrebleu); nltk counts one missed n-gram each."""
    hyps = ["a b", "a b c d x"]
    refs = [["a c", "a b c"], ["a b c d e f"]]
    # p1 = (2+4)/(2+5), p2 = (1+3)/(1+4), p3 = 2/3, p4 = 1/2; c = 7, r = 2 + 6.
    want = math.exp(1 - 8 / 7) * (6 / 7 * 4 / 5 * 2 / 3 * 1 / 2) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(want, abs=1e-12)
    nltk_want = math.exp(1 - 8 / 7) * (6 / 7 * 4 / 5 * 2 / 4 * 1 / 3) ** 0.25
    np.testing.assert_allclose(_nltk(hyps, refs), nltk_want, atol=1e-12)


def test_bleu_edge_cases():
    assert corpus_bleu([], []) == 0.0
    assert corpus_bleu([""], [["a b c d"]]) == 0.0
    assert corpus_bleu([["a", "b", "c", "d"]], [[["a", "b", "c", "d"]]]) == 1.0  # token lists
    with pytest.raises(ValueError, match="one list per hypothesis"):
        corpus_bleu(["a"], [])


# --- shapes -------------------------------------------------------------------------------
A = ("small", "red", "circle")
B = ("large", "blue", "square")
H = ("small", "red", "triangle")  # a held-out pair


def test_the_true_captions_of_both_splits_match_exactly():
    examples = [shapes.make_example(0, split, i, 32) for split in shapes.SPLITS
                for i in range(60)]
    for variant in (0, -1):
        scores = caption_scores([e["captions"][variant] for e in examples],
                                [e["objects"] for e in examples])
        assert scores == {"exact_match": 1.0, "size": 1.0, "colour": 1.0, "shape": 1.0,
                          "object_recall": 1.0, "held_out_recall": 1.0, "images": 120}


def test_parse_and_score_hand_made_captions():
    assert parse_objects("a small red circle left of a large blue square and "
                         "a large blue square above a small red triangle") == [A, B, B, H]
    assert parse_objects("red triangle big dog") == [(None, "red", "triangle")]
    truth = {"size": [b"small", b"large"], "colour": [b"red", b"blue"],  # as TFDS gives them
             "shape": [b"triangle", b"square"]}
    assert true_objects(truth) == {H, B}
    scores = caption_scores(
        ["a small red triangle left of a large blue square",   # exact
         "a large red triangle left of a large blue square",   # wrong size, held-out named
         "a small green triangle above a large blue square",   # wrong colour
         "hello world"],                                       # names nothing
        [truth] * 4)
    assert scores == {"exact_match": 0.25, "size": 0.5, "colour": 0.5, "shape": 0.75,
                      "object_recall": 4 / 8, "held_out_recall": 2 / 4, "images": 4}
    assert math.isnan(score_objects([{A}], [{A}])["held_out_recall"])  # no held-out object


def test_constant_baselines_by_hand():
    train = [{A}, {A}, {B}]
    validation = [{H}, {H, A}, {H}]
    got = constant_baselines(train, validation)
    # Chosen on train: {A}; per attribute {small}, {red}, {circle}.
    assert got["train_choice"] == {"exact_match": 0.0, "size": 1.0, "colour": 1.0,
                                   "shape": 0.0, "object_recall": 1 / 4,
                                   "held_out_recall": 0.0, "images": 3}
    # Chosen on validation: {H}; per attribute {small}, {red}, {triangle}.
    assert got["oracle"] == {"exact_match": 2 / 3, "size": 1.0, "colour": 1.0,
                                        "shape": 2 / 3, "object_recall": 3 / 4,
                                        "held_out_recall": 1.0, "images": 3}


def test_bleu_tokens_and_regenerated_object_sets():
    assert bleu_tokens("A red Circle, left.") == ["a", "red", "circle", ",", "left", "."]
    got = shapes_object_sets(0, "validation", 32, 20)
    assert got == [true_objects(shapes.make_example(0, "validation", i, 32)["objects"])
                   for i in range(20)]
