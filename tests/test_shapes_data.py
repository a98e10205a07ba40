"""The built-in shapes captioning set: renderer, captions, held-out split, TFDS round trip."""
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from scaling.data import shapes

N = 300  # examples per split checked by the property tests
_DESC = r"a (small|large) (\w+) (circle|square|triangle)"
_CLAUSE = re.compile(rf"^{_DESC} (left of|right of|above|below) {_DESC}$")


def _objects(example):
    o = example["objects"]
    return [dict(shape=s, colour=c, size=z, x=int(x), y=int(y))
            for s, c, z, x, y in zip(o["shape"], o["colour"], o["size"], o["x"], o["y"])]


def _examples(split, n=N, seed=0):
    return [shapes.make_example(seed, split, i) for i in range(n)]


@pytest.fixture(scope="module")
def examples():
    return {split: _examples(split) for split in shapes.SPLITS}


def _holds(a, rel, b):
    """Does `rel` hold of a relative to b? Written from the centres, not from shapes.relation:
    the axis where the centres differ most decides, image rows grow downwards."""
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    return {"left of": dx < 0 and abs(dx) >= abs(dy), "right of": dx > 0 and abs(dx) >= abs(dy),
            "above": dy < 0 and abs(dy) > abs(dx), "below": dy > 0 and abs(dy) > abs(dx)}[rel]


def test_captions_describe_the_objects_and_their_relations(examples):
    relations_seen = set()
    for split in shapes.SPLITS:
        for ex in examples[split]:
            objs = _objects(ex)
            assert 1 <= len(objs) <= shapes.MAX_OBJECTS
            caps = ex["captions"]
            if len(objs) == 1:
                o = objs[0]
                assert caps == [f"a {o['size']} {o['colour']} {o['shape']}"]
                continue
            assert len(caps) == 2
            # Variant 0 chains the objects in order, variant 1 in reverse.
            for cap, order in zip(caps, (objs, objs[::-1])):
                clauses = cap.split(" and ")
                assert len(clauses) == len(objs) - 1, cap
                for k, clause in enumerate(clauses):
                    m = _CLAUSE.match(clause)
                    assert m, clause
                    size_a, colour_a, shape_a, rel, size_b, colour_b, shape_b = m.groups()
                    a, b = order[k], order[k + 1]
                    assert (size_a, colour_a, shape_a) == (a["size"], a["colour"], a["shape"])
                    assert (size_b, colour_b, shape_b) == (b["size"], b["colour"], b["shape"])
                    assert _holds(a, rel, b), (clause, a, b)
                    relations_seen.add(rel)
    assert relations_seen == {"left of", "right of", "above", "below"}


def test_relation_words_on_hand_placed_objects():
    a = shapes.Obj("circle", "red", "small", 10, 30)
    b = shapes.Obj("square", "blue", "large", 50, 34)
    assert shapes.captions([a, b]) == ["a small red circle left of a large blue square",
                                       "a large blue square right of a small red circle"]
    c = shapes.Obj("triangle", "green", "small", 12, 55)
    assert shapes.relation(c, a) == "below" and shapes.relation(a, c) == "above"


def test_renderer_colours_each_object_and_nothing_else(examples):
    background = np.array(shapes.BACKGROUND, np.uint8)
    for split in shapes.SPLITS:
        for ex in examples[split][:100]:
            image = ex["image"]
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            objs = _objects(ex)
            covered = np.zeros((64, 64), bool)
            for o in objs:
                r = shapes.half_extent(o["size"], 64)
                np.testing.assert_array_equal(image[o["y"], o["x"]], shapes.COLOURS[o["colour"]])
                # The object lies inside its box and fits in the image.
                assert r <= o["x"] < 64 - r and r <= o["y"] < 64 - r
                box = np.zeros((64, 64), bool)
                box[o["y"] - r:o["y"] + r + 1, o["x"] - r:o["x"] + r + 1] = True
                assert not (box & covered).any(), "objects overlap"
                covered |= box
                if o["shape"] == "circle":  # a box corner lies outside the circle
                    np.testing.assert_array_equal(image[o["y"] - r, o["x"] - r], background)
            # Outside every object's box: only background.
            assert (image[~covered] == background).all()
            # Each colour drawn belongs to an object.
            drawn = {tuple(p) for p in image[covered].reshape(-1, 3)} - {tuple(background)}
            assert drawn <= {shapes.COLOURS[o["colour"]] for o in objs}


def test_held_out_pairs_never_in_train_and_in_every_validation_image(examples):
    held = set(shapes.HELD_OUT)
    for ex in examples["train"]:
        assert not {(o["colour"], o["shape"]) for o in _objects(ex)} & held
    for ex in examples["validation"]:
        assert {(o["colour"], o["shape"]) for o in _objects(ex)} & held
    # Every colour and every shape still appears in train (only the pairs are new).
    train_objs = [o for ex in examples["train"] for o in _objects(ex)]
    assert {o["colour"] for o in train_objs} == set(shapes.COLOURS)
    assert {o["shape"] for o in train_objs} == set(shapes.SHAPES)


def _assert_example_equal(a, b):
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["captions"] == b["captions"]
    for k in ("shape", "colour", "size", "x", "y"):
        assert list(a["objects"][k]) == list(b["objects"][k]), k


def test_examples_are_deterministic_and_independent(examples):
    # Regenerated alone, out of order, equal to the ones drawn in sequence.
    for i in (17, 3, 250):
        _assert_example_equal(shapes.make_example(0, "train", i), examples["train"][i])
    # Different seed, split or index: different images.
    base = examples["train"][5]["image"]
    assert not np.array_equal(shapes.make_example(1, "train", 5)["image"], base)
    assert not np.array_equal(examples["validation"][5]["image"], base)
    assert not np.array_equal(examples["train"][6]["image"], base)
    assert shapes.example_seed(0, "train", 5) != shapes.example_seed(0, "validation", 5)


def _decoded(record):
    """A data-source record (bytes strings) in make_example's types."""
    o = record["objects"]
    return {"image": record["image"], "captions": [c.decode() for c in record["captions"]],
            "objects": {"shape": [s.decode() for s in o["shape"]],
                        "colour": [s.decode() for s in o["colour"]],
                        "size": [s.decode() for s in o["size"]],
                        "x": [int(v) for v in o["x"]], "y": [int(v) for v in o["y"]]}}


def test_builder_prepares_offline_and_reads_back_the_regenerated_examples(tmp_path):
    builder = shapes.make_builder(str(tmp_path), seed=3, image_size=32, num_train=6,
                                  num_validation=4)
    builder.download_and_prepare()
    assert list(tmp_path.rglob("*.array_record*"))
    name = f"{builder.name}/{builder.builder_config.name}"
    for split, n in (("train", 6), ("validation", 4)):
        source = tfds.data_source(name, split=split, data_dir=str(tmp_path))
        assert len(source) == n
        for i in range(n):
            record = _decoded(source[i])
            assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
            _assert_example_equal(record, shapes.make_example(3, split, i, image_size=32))
    # Prepared once: a second load reuses the files.
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.array_record*"))
    shapes.load_shapes(str(tmp_path), seed=3, image_size=32, num_train=6, num_validation=4)
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*.array_record*")) == before
    # Another config does not collide with it.
    other = shapes.make_builder(str(tmp_path), seed=4, image_size=32, num_train=6,
                                num_validation=4)
    assert other.data_dir != builder.data_dir


@pytest.mark.parametrize("kwargs, field", [(dict(image_size=8), "image_size=8"),
                                           (dict(num_train=0), "num_train=0")])
def test_bad_config_is_one_line_naming_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field) as e:
        shapes.make_builder(str(tmp_path), **kwargs)
    assert "\n" not in str(e.value)
