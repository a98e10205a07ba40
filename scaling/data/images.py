"""Images for captioning: decode, resize, normalise and augment one example, in numpy.

  load_png(path) / decode(value) -> uint8 [h, w, 3]   (PNG/JPEG bytes, a path, or an array)
  preprocess(image, image_size, mean, std) -> float32 [S, S, 3]   resize + (x/255 - mean)/std
  augment(image, rng, kind) -> uint8 [S, S, 3]       per example, before normalising

Augmentation draws from an rng the pipeline seeds from (seed, index, epoch), so every host
builds the same example for the same position. There is deliberately no horizontal flip:
captions say "left of" / "right of", and a flipped image would contradict its caption.
"""
from __future__ import annotations

import io

import numpy as np

AUGMENTS = ("none", "crop")
CROP_PAD = 3             # "crop": pad this many pixels on each side, then crop back to S x S
BRIGHTNESS_JITTER = 0.1  # "crop": scale all pixels by a factor in [1 - j, 1 + j]


def decode(value) -> np.ndarray:
    """A record's image feature -> uint8 [h, w, 3]: encoded bytes (PNG, JPEG), or an array
    (TFDS decodes Image features to arrays itself); grey and RGBA become RGB."""
    if isinstance(value, (bytes, bytearray)):
        from PIL import Image  # pylint: disable=import-outside-toplevel
        with Image.open(io.BytesIO(value)) as img:
            return np.asarray(img.convert("RGB"), np.uint8)
    image = np.asarray(value)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"data.image_key: expected an image [h, w, channels], got shape "
                         f"{image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)


def load_png(path: str) -> np.ndarray:
    """An image file (PNG, or anything PIL reads) -> uint8 [h, w, 3]."""
    with open(path, "rb") as f:
        return decode(f.read())


def resize(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [S, S, 3] by PIL bilinear (unchanged when already S x S).

    A non-square image is stretched to the square, as the model's grid is square."""
    if image.shape[:2] == (image_size, image_size):
        return image
    from PIL import Image  # pylint: disable=import-outside-toplevel
    return np.asarray(Image.fromarray(image).resize((image_size, image_size),
                                                    Image.BILINEAR), np.uint8)


def augment(image: np.ndarray, rng: np.random.Generator, kind: str = "crop") -> np.ndarray:
    """One example's augmentation of uint8 [S, S, 3]; returns uint8 [S, S, 3].

    "none": the image itself. "crop": pad CROP_PAD pixels of edge colour on each side,
    cut a random S x S window back out (a shift of up to CROP_PAD pixels), and scale the
    brightness by a random factor in [1 - BRIGHTNESS_JITTER, 1 + BRIGHTNESS_JITTER].
    No flip (the captions name left and right).
    """
    if kind == "none":
        return image
    if kind != "crop":
        raise ValueError(f"data.augment: unknown {kind!r}; allowed: {', '.join(AUGMENTS)}")
    h, w = image.shape[:2]
    padded = np.pad(image, ((CROP_PAD, CROP_PAD), (CROP_PAD, CROP_PAD), (0, 0)), mode="edge")
    dy, dx = (int(v) for v in rng.integers(0, 2 * CROP_PAD + 1, size=2))
    out = padded[dy:dy + h, dx:dx + w].astype(np.float32)
    out *= rng.uniform(1 - BRIGHTNESS_JITTER, 1 + BRIGHTNESS_JITTER)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def normalise(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [..., 3] -> float32 (x/255 - mean)/std, mean and std per channel (or scalars)."""
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    if np.any(std <= 0):
        raise ValueError(f"data.image_std: must be positive, got {std.tolist()}")
    return (image.astype(np.float32) / 255.0 - mean) / std


def preprocess(image, image_size: int, mean, std) -> np.ndarray:
    """decode + resize + normalise (no augmentation): float32 [S, S, 3] for the model."""
    return normalise(resize(decode(image), image_size), mean, std)
