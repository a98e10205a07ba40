"""The built-in offline captioning set: procedurally rendered shapes, captioned from what is drawn.

Each image (RGB uint8, square) holds 1-3 non-overlapping objects, each a shape, a colour, a
size and a position; its captions are generated from those objects ("a small red circle left
of a large blue square"), and the objects themselves are kept as structured attributes so an
exact-match metric can compare a generated caption with the truth.

Everything is a pure function of (dataset seed, split, index): `make_example` regenerates any
one example alone, so the prepared TFDS dataset can always be checked against the functions.

Held-out compositions: the colour/shape pairs in `HELD_OUT` never appear in the train split,
and every validation image contains at least one, so the validation split measures whether a
model composes attributes it has seen separately rather than recalling seen pairs.

`make_builder` / `load_shapes` prepare the splits once as array_record in the TFDS data dir
(nothing is downloaded), keyed by the config (seed, image size, split sizes), like the text
corpus of builtin.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import tensorflow_datasets as tfds

SHAPES = ("circle", "square", "triangle")
COLOURS = {  # name -> RGB; far apart so the colour under a pixel names the object. Nine, so
    # that every shape is drawn in many colours: with few, a network learns colour-shape
    # conjunctions and cannot name a held-out pair.
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 180, 60),
    "cyan": (40, 210, 220),
    "blue": (40, 80, 230),
    "purple": (150, 60, 200),
    "pink": (245, 130, 200),
    "white": (235, 235, 235),
}
BACKGROUND = (24, 24, 24)
SIZES = {"small": 0.14, "large": 0.22}  # half-extent of the object as a fraction of the image side
# Never together in train; every validation image has one. Each colour and each shape still
# appears in train with other partners.
HELD_OUT = (("red", "triangle"), ("green", "square"), ("blue", "circle"),
            ("yellow", "triangle"))
MAX_OBJECTS = 3
MIN_IMAGE_SIZE = 16
_MARGIN = 2  # pixels between the bounding boxes of two objects
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class Obj:
    """One drawn object: attributes plus its centre (x column, y row) in pixels."""
    shape: str
    colour: str
    size: str
    x: int
    y: int


def half_extent(size: str, image_size: int) -> int:
    """Half the side of the object's bounding box in pixels (the circle's radius)."""
    return max(2, int(round(SIZES[size] * image_size)))


def check_image_size(image_size: int) -> None:
    """One-line error for an image too small to hold a large object with room to place it."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"shapes image_size={image_size} is too small to draw the objects; "
                         f"use at least {MIN_IMAGE_SIZE}")


def example_seed(seed: int, split: str, index: int) -> int:
    """The per-example seed: a hash of (dataset seed, split, index), so examples are independent."""
    digest = hashlib.sha256(f"shapes/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _pairs(held_out: bool) -> list[tuple[str, str]]:
    """The (colour, shape) pairs in or out of HELD_OUT, in a fixed order."""
    return [(c, s) for c in COLOURS for s in SHAPES if ((c, s) in HELD_OUT) == held_out]


def sample_objects(rng: np.random.Generator, image_size: int, split: str) -> list[Obj]:
    """Draws 1-3 non-overlapping objects for one image of `split`.

    Train objects use only the pairs outside HELD_OUT. A validation image's first object is a
    held-out pair and the others are any pair. An object with no free place after many tries
    is left out (never the first), so the result is always valid.
    """
    if split not in SPLITS:
        raise ValueError(f"shapes split={split!r}: use one of {SPLITS}")
    seen, held = _pairs(False), _pairs(True)
    everything = seen + held
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    objects: list[Obj] = []
    for i in range(n):
        if split == "train":
            pool = seen
        else:
            pool = held if i == 0 else everything
        colour, shape = pool[int(rng.integers(len(pool)))]
        size = ("small", "large")[int(rng.integers(2))]
        r = half_extent(size, image_size)
        for _ in range(100):
            x = int(rng.integers(r, image_size - r))
            y = int(rng.integers(r, image_size - r))
            # Boxes [x-r, x+r] apart by _MARGIN along at least one axis: disjoint.
            if all(abs(x - o.x) > r + half_extent(o.size, image_size) + _MARGIN
                   or abs(y - o.y) > r + half_extent(o.size, image_size) + _MARGIN
                   for o in objects):
                objects.append(Obj(shape, colour, size, x, y))
                break
    return objects


def _mask(obj: Obj, image_size: int) -> np.ndarray:
    """(S, S) bool: the pixels the object covers (pixel (row y, column x) at integer coords)."""
    r = half_extent(obj.size, image_size)
    ys, xs = np.mgrid[:image_size, :image_size]
    dx, dy = xs - obj.x, ys - obj.y
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":
        side = int(round(0.85 * r))  # a little smaller than the box: similar area to the circle
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if obj.shape == "triangle":
        # Equilateral, pointing up, vertices on the circle of radius r: centroid at the centre.
        verts = [(0.0, -r), (-r * np.sqrt(3) / 2, r / 2), (r * np.sqrt(3) / 2, r / 2)]
        inside = np.ones((image_size, image_size), bool)
        for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1]):
            # Counter-clockwise on screen (y down): inside is where the cross product is <= 0.
            inside &= (x1 - x0) * (dy - y0) - (y1 - y0) * (dx - x0) <= 1e-9
        return inside
    raise ValueError(f"shapes: unknown shape {obj.shape!r}; use one of {SHAPES}")


def render(objects: list[Obj], image_size: int = 64) -> np.ndarray:
    """Draws the objects on a dark background. Returns (S, S, 3) uint8."""
    image = np.empty((image_size, image_size, 3), np.uint8)
    image[...] = BACKGROUND
    for obj in objects:
        image[_mask(obj, image_size)] = COLOURS[obj.colour]
    return image


def describe(obj: Obj) -> str:
    """'a small red circle'."""
    return f"a {obj.size} {obj.colour} {obj.shape}"


def relation(a: Obj, b: Obj) -> str:
    """Where a is relative to b, along the axis their centres differ most (rows grow down)."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def captions(objects: list[Obj]) -> list[str]:
    """The caption variants of an image: the chain of relations told forwards and backwards.

    Grammar: `a SIZE COLOUR SHAPE` alone, or clauses `DESC RELATION DESC` joined by ' and ',
    between consecutive objects: (0,1),(1,2) and, as the second variant, (2,1),(1,0).
    """
    if len(objects) == 1:
        return [describe(objects[0])]
    variants = []
    for order in (objects, objects[::-1]):
        clauses = [f"{describe(a)} {relation(a, b)} {describe(b)}"
                   for a, b in zip(order, order[1:])]
        variants.append(" and ".join(clauses))
    return variants


def make_example(seed: int, split: str, index: int, image_size: int = 64) -> dict:
    """Example `index` of `split`, regenerated alone from the seeds.

    Returns:
      {'image': (S, S, 3) uint8, 'captions': list[str],
       'objects': {'shape','colour','size': list[str], 'x','y': (n,) int32}}.
    """
    check_image_size(image_size)
    objects = sample_objects(np.random.default_rng(example_seed(seed, split, index)),
                             image_size, split)
    return {
        "image": render(objects, image_size),
        "captions": captions(objects),
        "objects": {"shape": [o.shape for o in objects],
                    "colour": [o.colour for o in objects],
                    "size": [o.size for o in objects],
                    "x": np.array([o.x for o in objects], np.int32),
                    "y": np.array([o.y for o in objects], np.int32)},
    }


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    """One prepared shapes set; `name` spells out the fields, so two configs never collide."""
    seed: int = 0
    image_size: int = 64
    num_train: int = 20000
    num_validation: int = 1000


class ScalingShapesCaptions(tfds.core.GeneratorBasedBuilder):
    """Rendered shapes with generated captions; validation holds the held-out compositions."""

    # A new version whenever what is drawn changes: a set prepared by an older one is then
    # prepared again instead of being read back under the same name.
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "2.0.0": "Nine colours; larger objects."}

    # No code directory with checksums/metadata (see builtin.ScalingBuiltinCorpus).
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered shapes with captions generated from them.",
            # Record i of a split is example i (random access by index); the examples are
            # already independent draws, so TFDS's shuffle by key would only hide the index.
            disable_shuffling=True,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 3), dtype=np.uint8,
                                              encoding_format="png"),
                "captions": tfds.features.Sequence(tfds.features.Text()),
                "objects": tfds.features.Sequence({
                    "shape": tfds.features.Text(), "colour": tfds.features.Text(),
                    "size": tfds.features.Text(), "x": np.int32, "y": np.int32}),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        c = self.builder_config
        return {"train": self._generate_examples("train", c.num_train),
                "validation": self._generate_examples("validation", c.num_validation)}

    def _generate_examples(self, split: str, num: int):
        c = self.builder_config
        for index in range(num):
            example = make_example(c.seed, split, index, c.image_size)
            # Handed over as PNG bytes encoded by PIL: TFDS would encode an array with
            # TensorFlow, which this project does not install. PNG is lossless.
            example["image"] = _png(example["image"])
            yield index, example


def _png(image: np.ndarray) -> bytes:
    """(S, S, 3) uint8 -> PNG bytes."""
    from PIL import Image  # pylint: disable=import-outside-toplevel  (only when preparing)
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="png")
    return buffer.getvalue()


def make_builder(data_dir: str | None, seed: int = 0, image_size: int = 64,
                 num_train: int = 20000, num_validation: int = 1000) -> ScalingShapesCaptions:
    """Returns the (not yet prepared) builder for this seed, image size and split sizes."""
    check_image_size(image_size)
    for field, value in (("num_train", num_train), ("num_validation", num_validation)):
        if value < 1:
            raise ValueError(f"shapes {field}={value}: each split needs at least one example")
    config = ShapesConfig(name=f"s{seed}_{image_size}px_t{num_train}_v{num_validation}",
                          seed=seed, image_size=image_size, num_train=num_train,
                          num_validation=num_validation,
                          description=f"{image_size}x{image_size} shapes, seed {seed}")
    return ScalingShapesCaptions(config=config, data_dir=data_dir or None,
                                 file_format="array_record")


def load_shapes(data_dir: str | None, seed: int = 0, image_size: int = 64,
                num_train: int = 20000, num_validation: int = 1000):
    """Prepares the set once and returns {'train': source, 'validation': source} (random access)."""
    builder = make_builder(data_dir, seed, image_size, num_train, num_validation)
    builder.download_and_prepare()  # no-op when prepared before
    return builder.as_data_source()
