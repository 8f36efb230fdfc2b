"""Reassemble object patches onto an object canvas (see docs/conventions.md).

Geometry: with c = N // 2 (= N/2 for the usual even N), patch index (i, j) of a patch at position
(x, y) is object pixel (row y - c + i, column x - c + j). A canvas pixel [r, k] is object pixel
(row origin_y + r, column origin_x + k), so a canvas of the object's shape with origin (0, 0)
overlays the object pixel for pixel. Only the central keep x keep region of each patch is used
(patch rows and columns (N - keep) // 2 ... (N - keep) // 2 + keep - 1).

Sub-pixel positions are realised by bilinear splatting, the adjoint of the bilinear sampling that
cuts patches: every patch pixel adds its value to the 4 surrounding canvas pixels with the bilinear
weights, and each canvas pixel is the weighted mean of what landed on it (sum of weight * value /
sum of weights). Sums are accumulated in float64, so identical patches at integer positions give
back the object exactly. Pixels no patch reaches get a fill value (0 by default).

An optional weight map (N, N) weights every patch pixel on top of the bilinear weights. Inference
uses the probe intensity (`illumination_weight`): a patch pixel is as trustworthy as the light that
reached it, as in the object update of ePIE and LSQML.

Work is vectorised per chunk of patches (np.bincount on flat canvas indices), so memory is bounded
by the canvas plus one chunk; a `Stitcher` also accepts patches chunk by chunk for scans that do not
fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho.grouping import as_positions

DEFAULT_CHUNK_SIZE = 256  # keeps the per-chunk temporaries (a few MB) cache-sized; larger is not faster
_RESULT_ROWS = 256  # rows per band when the weighted mean is formed
ILLUMINATION_FLOOR = 1e-3
"""`illumination_weight`'s smallest weight, relative to the peak: dark patch pixels still count a
little, so where patches land (the coverage) does not depend on the probe."""


@dataclass(frozen=True)
class StitchedObject:
    """A stitched object.

    image: complex64 (H, W), the weighted mean of the patches (fill value where weights == 0).
    weights: float64 (H, W), sum of the weights that reached each pixel (bilinear times the weight
        map; 0 = not covered).
    origin: (x, y) object-pixel coordinates of image[0, 0].
    """

    image: np.ndarray
    weights: np.ndarray
    origin: tuple[float, float]

    @property
    def covered(self) -> np.ndarray:
        """bool (H, W): pixels reached by at least one patch."""
        return self.weights > 0


def illumination_weight(probe: np.ndarray) -> np.ndarray:
    """float32 (N, N) stitching weights from a complex (N, N) probe: |probe|**2 / max |probe|**2,
    at least ILLUMINATION_FLOOR."""
    intensity = np.abs(np.asarray(probe)) ** 2
    peak = float(intensity.max()) if intensity.size else 0.0
    if intensity.ndim != 2 or not math.isfinite(peak) or peak <= 0:
        raise ValueError(f"probe: expected a finite, non-zero (N, N) array, got shape {intensity.shape}")
    return np.maximum(intensity / peak, ILLUMINATION_FLOOR).astype(np.float32)


def default_keep(patch_size: int) -> int:
    """Default side of the central region kept from each patch: N // 2 (the well-illuminated centre)."""
    return max(patch_size // 2, 1)


def canvas_covering(positions: np.ndarray, patch_size: int, keep: int | None = None
                    ) -> tuple[tuple[int, int], tuple[float, float]]:
    """The smallest integer-aligned canvas that holds every kept region: ((H, W), origin (x, y)).

    positions: float (..., 2), object-pixel coordinates (x, y); patch_size: N; keep: kept side
    (default `default_keep(N)`).
    """
    keep = _check_keep(keep, patch_size)
    positions = as_positions(positions).reshape(-1, 2)
    if len(positions) == 0:
        raise ValueError("positions: at least one position is needed to size the canvas")
    start = (patch_size - keep) // 2 - patch_size // 2
    low = np.floor(positions.min(axis=0))
    high = np.ceil(positions.max(axis=0))
    width, height = (high - low).astype(np.int64) + keep
    origin_x, origin_y = low + start
    return (int(height), int(width)), (float(origin_x), float(origin_y))


class Stitcher:
    """Accumulates patches onto a fixed canvas; call `add` any number of times, then `result`.

    shape: (H, W) of the canvas; origin: (x, y) object-pixel coordinates of canvas pixel [0, 0];
    patch_size: N; keep: side of the central region kept (default N // 2, at most N);
    weight: optional non-negative float (N, N) map, each patch pixel's weight in the mean (default
    uniform); chunk_size: patches processed per vectorised step (temporary memory is about
    50 * chunk_size * (keep + 1)**2 bytes on top of the 3 float64 accumulators of the canvas).
    """

    def __init__(self, shape: tuple[int, int], *, patch_size: int, origin: tuple[float, float] = (0.0, 0.0),
                 keep: int | None = None, weight: np.ndarray | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if len(shape) != 2 or any(int(s) != s or s < 1 for s in shape):
            raise ValueError(f"shape: expected two positive integers (H, W), got {shape}")
        if len(origin) != 2 or not all(math.isfinite(float(o)) for o in origin):
            raise ValueError(f"origin: expected two finite numbers (x, y), got {origin}")
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size: expected a positive integer, got {patch_size}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.origin = (float(origin[0]), float(origin[1]))
        self.patch_size = int(patch_size)
        self.keep = _check_keep(keep, self.patch_size)
        self.chunk_size = int(chunk_size)
        start = (self.patch_size - self.keep) // 2
        self._kept = slice(start, start + self.keep)
        self._weight = None if weight is None else _check_weight(weight, self.patch_size)[self._kept, self._kept]
        # Accumulators carry a margin of `keep` pixels on every side, so a patch overlapping the
        # border splats without clipping; `result` crops the margin away.
        margin = self.keep
        padded = (self.shape[0] + 2 * margin, self.shape[1] + 2 * margin)
        self._sum_real = np.zeros(padded)
        self._sum_imag = np.zeros(padded)
        self._weights = np.zeros(padded)
        side = np.arange(self.keep + 1)
        # Flat offsets of the (keep + 1) x (keep + 1) splat footprint from its top-left pixel.
        self._footprint = (side[:, None] * padded[1] + side[None, :]).ravel()

    def add(self, patches: np.ndarray, positions: np.ndarray) -> None:
        """Splat patches onto the canvas.

        patches: complex (or real) (n, N, N) or grouped (g, C, N, N); positions: float (n, 2) or
        (g, C, 2), object-pixel coordinates (x, y) of each patch centre. Patches are processed in
        chunks sorted by row, so each chunk touches a narrow band of the canvas.
        """
        patches = np.asarray(patches)
        positions = as_positions(positions)
        n = self.patch_size
        if patches.ndim < 3 or patches.shape[-2:] != (n, n):
            raise ValueError(f"patches: expected shape (..., {n}, {n}), got {patches.shape}")
        if patches.shape[:-2] != positions.shape[:-1]:
            raise ValueError(f"positions: expected shape {patches.shape[:-2] + (2,)} (one (x, y) per patch), "
                             f"got {positions.shape}")
        if not np.issubdtype(patches.dtype, np.number):
            raise ValueError(f"patches: expected complex or real numbers, got dtype {patches.dtype}")
        patches = patches.reshape((-1, n, n))
        positions = positions.reshape(-1, 2)
        order = np.argsort(positions[:, 1], kind="stable")
        for first in range(0, len(order), self.chunk_size):
            chunk = order[first:first + self.chunk_size]
            self._add_chunk(patches[chunk, self._kept, self._kept], positions[chunk])

    def result(self, fill: complex = 0.0) -> StitchedObject:
        """The weighted mean so far (complex64), with `fill` where no patch landed.

        Computed in bands of rows, so its temporaries stay small next to the canvas (a 200,000-pattern
        scan's canvas is about 2700 x 2700 pixels)."""
        crop = (slice(self.keep, self.keep + self.shape[0]), slice(self.keep, self.keep + self.shape[1]))
        weights = self._weights[crop].copy()
        sum_real, sum_imag = self._sum_real[crop], self._sum_imag[crop]  # views, no copies
        image = np.full(self.shape, fill, dtype=np.complex64)
        for top in range(0, self.shape[0], _RESULT_ROWS):
            rows = slice(top, top + _RESULT_ROWS)
            covered = weights[rows] > 0
            image.real[rows][covered] = sum_real[rows][covered] / weights[rows][covered]
            image.imag[rows][covered] = sum_imag[rows][covered] / weights[rows][covered]
        return StitchedObject(image=image, weights=weights, origin=self.origin)

    def _add_chunk(self, kept: np.ndarray, positions: np.ndarray) -> None:
        """Splat the kept regions (k, keep, keep) of patches at positions (k, 2)."""
        keep, (height, width) = self.keep, self.shape
        # Continuous canvas coordinate of kept pixel [0, 0], split into an integer corner and a fraction.
        corner = positions - self.origin - (self.patch_size // 2 - (self.patch_size - keep) // 2)
        whole = np.floor(corner)
        fraction = (corner - whole).astype(np.float32)
        col0, row0 = whole.astype(np.int64).T
        overlaps = (row0 + keep >= 0) & (row0 < height) & (col0 + keep >= 0) & (col0 < width)
        if not overlaps.all():
            kept, fraction, row0, col0 = kept[overlaps], fraction[overlaps], row0[overlaps], col0[overlaps]
        if len(kept) == 0:
            return
        fc, fr = fraction[:, 0, None, None], fraction[:, 1, None, None]
        kept = kept.astype(np.complex64, copy=False)
        if self._weight is None:  # uniform: the splatted weights are an outer product of 1-D splats
            values = _splat(_splat(kept, fr, axis=1), fc, axis=2)
            ones = np.ones((len(kept), keep, 1), dtype=np.float32)
            weights = _splat(ones, fr, axis=1) * _splat(ones.transpose(0, 2, 1), fc, axis=2)
        else:
            values = _splat(_splat(kept * self._weight, fr, axis=1), fc, axis=2)
            weights = _splat(_splat(np.broadcast_to(self._weight, kept.shape), fr, axis=1), fc, axis=2)

        padded_width = self._weights.shape[1]
        top = (row0 + keep) * padded_width + col0 + keep  # flat index of each footprint's corner
        band_lo = int(row0.min() + keep) * padded_width
        band_hi = int(row0.max() + 2 * keep + 1) * padded_width
        flat = ((top - band_lo)[:, None] + self._footprint).ravel()
        band = slice(band_lo, band_hi)
        size = band_hi - band_lo
        self._sum_real.reshape(-1)[band] += np.bincount(flat, values.real.reshape(-1), size)
        self._sum_imag.reshape(-1)[band] += np.bincount(flat, values.imag.reshape(-1), size)
        self._weights.reshape(-1)[band] += np.bincount(flat, weights.reshape(-1), size)


def _splat(x: np.ndarray, fraction: np.ndarray, axis: int) -> np.ndarray:
    """Bilinear splat along `axis` by a fraction f in [0, 1]; the result is one longer along `axis`.

    out[i] = (1 - f) x[i] + f x[i - 1], with x zero outside its range.
    """
    shape = list(x.shape)
    shape[axis] += 1
    out = np.zeros(shape, dtype=x.dtype)
    head = [slice(None)] * x.ndim
    tail = [slice(None)] * x.ndim
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    out[tuple(head)] = (1 - fraction) * x
    out[tuple(tail)] += fraction * x
    return out


def stitch_patches(
    patches: np.ndarray,
    positions: np.ndarray,
    *,
    shape: tuple[int, int] | None = None,
    origin: tuple[float, float] | None = None,
    keep: int | None = None,
    weight: np.ndarray | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    fill: complex = 0.0,
) -> StitchedObject:
    """Stitch patches into one object image.

    patches: complex (n, N, N) or grouped (g, C, N, N); positions: float (n, 2) or (g, C, 2),
    object-pixel coordinates (x, y) of the patch centres.
    shape, origin: the target grid (H, W) and the (x, y) object-pixel coordinates of its pixel
        [0, 0] (default (0, 0)); with shape None the canvas is the smallest one covering every kept
        region (`canvas_covering`) and its origin is returned in the result.
    keep: side of the central region kept from each patch (default N // 2; 1..N).
    weight: optional (N, N) weight of each patch pixel (e.g. `illumination_weight(probe)`).
    chunk_size: patches per vectorised step; fill: value of pixels no patch reaches.
    """
    patches = np.asarray(patches)
    if patches.ndim < 3:
        raise ValueError(f"patches: expected shape (n, N, N) or (g, C, N, N), got {patches.shape}")
    patch_size = patches.shape[-1]
    if shape is None:
        if origin is not None:
            raise ValueError("origin: needs a target shape; without one the canvas and its origin are automatic")
        shape, origin = canvas_covering(positions, patch_size, keep)
    stitcher = Stitcher(shape, patch_size=patch_size, origin=(0.0, 0.0) if origin is None else origin,
                        keep=keep, weight=weight, chunk_size=chunk_size)
    stitcher.add(patches, positions)
    return stitcher.result(fill)


def _check_keep(keep: int | None, patch_size: int) -> int:
    if keep is None:
        return default_keep(patch_size)
    if int(keep) != keep or not 1 <= keep <= patch_size:
        raise ValueError(f"keep: expected an integer in 1..{patch_size} (the patch size), got {keep}")
    return int(keep)


def _check_weight(weight: np.ndarray, patch_size: int) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.shape != (patch_size, patch_size) or not np.issubdtype(weight.dtype, np.floating):
        raise ValueError(f"weight: expected a float ({patch_size}, {patch_size}) map (the patch size), "
                         f"got {weight.dtype} {weight.shape}")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("weight: expected finite, non-negative values")
    return weight.astype(np.float32)
