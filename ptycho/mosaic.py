"""Objects made of randomly turned pieces of a reconstruction: more training objects like the sample.

`mosaic_object(source, shape, rng)` fills an object of `shape` with pieces of `source` (a complex
object, e.g. the well-covered region of a reconstruction of the training scan itself). Seeds lie on a
jittered square grid; each seed gets a square piece of `source` turned by a random angle and mirrored
at random, and every pixel takes the piece of its nearest seed. Neighbouring pieces are blended over
about `seam_px` pixels, so the seams are not sharp edges. `ptycho.synthetic` simulates training patterns
of such objects through the scan's own probe: new arrangements and orientations of the sample's own
features, not the eight exact turns of `ptycho.symmetry`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

SEAM_PX = 2.0
"""Width (pixels) over which the weight of a piece falls by 1/e beyond the border of its cell."""

MIN_PIECE_PX = 16
"""Smallest side (pixels) of a piece; a source must hold one at every angle (sides >= sqrt 2 times this)."""

PITCH_PER_PIECE = 0.6
"""Seed pitch as a fraction of the piece side: with JITTER_PER_PIECE, every pixel's nearest seed lies
within half a piece of it (0.6 / sqrt 2 + 0.05 * sqrt 2 < 0.5), so its piece covers it."""

JITTER_PER_PIECE = 0.05
"""Largest displacement of a seed from its grid point along each axis, as a fraction of the piece side."""

BLEND_SEEDS = 4
"""Number of nearest seeds whose pieces are blended at each pixel."""


def piece_side(source_shape: tuple[int, int]) -> int:
    """Side (even, pixels) of the square that fits inside a (h, w) source turned by any angle: the
    source's inscribed disk, less 2 px for the interpolation at its border."""
    return 2 * int((min(source_shape) - 2) / math.sqrt(2) / 2)


def check_source(source: np.ndarray) -> int:
    """The piece side for `source`; ValueError unless it is a finite complex (h, w) array that holds a
    piece of MIN_PIECE_PX at any angle."""
    if source.ndim != 2 or not np.iscomplexobj(source) or not np.all(np.isfinite(source)):
        raise ValueError(f"mosaic source: expected a finite complex (h, w) array, got {source.dtype} {source.shape}")
    side = piece_side(source.shape)
    if side < MIN_PIECE_PX:
        raise ValueError(f"mosaic source: expected at least {math.ceil(MIN_PIECE_PX * math.sqrt(2)) + 2} pixels "
                         f"along each side (a {MIN_PIECE_PX} px piece at any angle), got {source.shape}")
    return side


def mosaic_object(source: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, *,
                  seam_px: float = SEAM_PX) -> np.ndarray:
    """A complex64 object of `shape` (H, W) tiled with randomly turned and mirrored pieces of `source`
    (complex (h, w), any units). Pieces are `piece_side(source.shape)` pixels square, drawn from random
    places where they fit inside the turned source (linear interpolation of real and imaginary parts),
    and blended in the complex domain. Raises ValueError as `check_source` does.
    """
    source = np.asarray(source)
    side = check_source(source)
    height, width = int(shape[0]), int(shape[1])
    pitch = PITCH_PER_PIECE * side
    rows = np.arange(-pitch, height + pitch, pitch)
    cols = np.arange(-pitch, width + pitch, pitch)
    seeds = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    seeds += rng.uniform(-JITTER_PER_PIECE * side, JITTER_PER_PIECE * side, seeds.shape)

    pixels = np.stack(np.mgrid[:height, :width], axis=-1).reshape(-1, 2).astype(np.float64)
    distances, nearest = cKDTree(seeds).query(pixels, k=min(BLEND_SEEDS, len(seeds)))
    # the weight falls by 1/e per seam_px beyond the bisector with the nearest seed (d^2 - d0^2 ~ 2 pitch x)
    weights = np.exp(-(distances**2 - distances[:, :1] ** 2) / (2.0 * pitch * seam_px))
    used, piece_of = np.unique(nearest, return_inverse=True)  # a piece for each seed that some pixel uses
    pieces = np.stack([_random_piece(source, side, rng) for _ in used])
    piece_of = piece_of.reshape(nearest.shape)
    # each pixel's position in the pieces of its nearest seeds; a pixel outside a piece gets no weight from it
    offset = np.rint(pixels[:, None, :] - seeds[nearest]).astype(np.int64) + side // 2
    inside = np.all((offset >= 0) & (offset < side), axis=-1)
    offset = np.clip(offset, 0, side - 1)
    values = pieces[piece_of, offset[..., 0], offset[..., 1]]
    weights = np.where(inside, weights, 0.0)
    mosaic = np.sum(weights * values, axis=1) / np.sum(weights, axis=1)
    return mosaic.reshape(height, width).astype(np.complex64)


def _random_piece(source: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A (side, side) piece of `source` turned by a random angle, at a random place where it lies
    wholly inside the turned source, mirrored left-right with probability 1/2."""
    angle = rng.uniform(0.0, 360.0)
    turned = [ndimage.rotate(part, angle, reshape=True, order=1) for part in (source.real, source.imag)]
    valid = ndimage.rotate(np.ones(source.shape), angle, reshape=True, order=0) > 0.5
    fits = ndimage.minimum_filter(ndimage.binary_erosion(valid).astype(np.uint8), size=side, mode="constant") > 0
    centres = np.argwhere(fits)  # never empty: piece_side fits the source's inscribed disk
    row, col = centres[rng.integers(len(centres))] - side // 2
    piece = (turned[0] + 1j * turned[1])[row:row + side, col:col + side]
    return piece[:, ::-1] if rng.random() < 0.5 else piece
