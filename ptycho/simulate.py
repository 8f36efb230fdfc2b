"""Synthetic ptychography scans with ground truth (deterministic, seeded).

A simulation draws a scan (positions), an object and a probe, computes noise-free diffraction
amplitudes with the project's one forward model (`ptycho.physics.diffraction_amplitudes`, with its
default sub-pixel interpolation), then optionally applies Poisson noise for a given dose. Conventions: docs/conventions.md.

Units and shapes:
- positions: float64 (n, 2) object-pixel coordinates (x, y); the patch of (x, y) covers object rows
  y - N/2 ... y + N/2 - 1 and columns x - N/2 ... x + N/2 - 1;
- object: complex64 (H, W), amplitude in [0.5, 1], phase in [-1, 1] rad for the generated kinds;
- probe: complex64 (N, N), object-plane illumination centred at pixel (N/2, N/2);
- amplitudes: float32 (n, N, N) = sqrt(counts), zero frequency at index N//2;
- nphotons: mean total photon count per pattern.

Randomness: one `numpy.random.SeedSequence(seed)` spawns independent streams for the scan, the
object and the noise, so e.g. changing the dose does not change the object or the positions.
This module imports TensorFlow only when `simulate` runs the forward model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, special

from ptycho.config.config import ConfigError
from ptycho.scan import ScanData, ScanMetadata

OBJECT_KINDS = ("lines", "grf", "points", "image")
PROBE_KINDS = ("disk", "gaussian", "array")
SCAN_KINDS = ("raster", "jittered", "random", "fermat")
IMAGE_ROLES = ("both", "amplitude", "phase")

# Object texture, in object pixels (fixed so that features look the same at every object size).
LINES_PER_PIXEL = 100 / 256**2  # ~100 strokes on a 256 x 256 object, like the reference "lines" object
LINE_LENGTH_PX = (16.0, 128.0)  # uniform range of stroke lengths
LINE_WIDTH_PX = 3.0  # stroke width before blurring
BLUR_SIGMA_PX = 1.0  # Gaussian blur that keeps lines band-limited
GRF_CORRELATION_PX = 4.0  # sigma of the Gaussian filter applied to white noise
POINTS_PER_PIXEL = 1 / 400  # one blob per 20 x 20 pixels on average
POINT_SIGMA_PX = 1.5  # blob radius (Gaussian sigma)

# Object value ranges of the generated kinds.
AMPLITUDE_RANGE = (0.5, 1.0)
PHASE_RANGE = (-1.0, 1.0)


@dataclass
class SimulationConfig:
    """What to simulate.

    object_kind: 'lines', 'grf' (Gaussian random field), 'points' (sparse blobs) or 'image'.
    object_size: (H, W) object pixels, or None for the smallest object that holds the scan (for
        'image': the image's own shape). A given size must hold the scan plus `margin`.
    N: pattern / probe side in pixels (even).
    n_images: number of scan positions (patterns).
    step: scan step in object pixels (raster pitch; for 'random' and 'fermat' the mean area per
        position is step**2, i.e. the same density as a raster).
    scan_kind: 'raster', 'jittered' (raster + uniform jitter), 'random' (uniform in the raster's
        extent) or 'fermat' (Fermat spiral).
    jitter: half-width of the uniform jitter of 'jittered' scans, as a fraction of `step`.
    margin: minimum number of object pixels between any patch and the object's border; the default 4
        covers the border that the forward model's sub-pixel (Fourier) interpolation reads.
    probe_kind: 'disk' (soft-edged disk), 'gaussian', or 'array' (use `probe_array`).
    probe_radius: disk radius (50 % edge) or Gaussian 1/e amplitude radius in pixels; None -> N/4.
    probe_defocus: quadratic (defocus-like) probe phase in rad at r = probe_radius.
    probe_array: complex (N, N) probe for probe_kind='array' (any scale: it is rescaled to nphotons).
    image: for object_kind='image': a 2-D array (real grey values, RGB(A) (H, W, 3|4), or complex,
        used as the object as is) or a path to a PNG file.
    image_role: what a real image sets: 'both' (amplitude and phase), 'amplitude' (phase 0) or
        'phase' (amplitude 1).
    nphotons: mean total counts per pattern (Poisson noise); None -> noise-free, unscaled probe.
    seed: seed of all randomness.
    """

    object_kind: str = "lines"
    object_size: tuple[int, int] | None = None
    N: int = 64
    n_images: int = 1000
    step: float = 6.0
    scan_kind: str = "jittered"
    jitter: float = 0.25
    margin: int = 4
    probe_kind: str = "disk"
    probe_radius: float | None = None
    probe_defocus: float = 1.0
    probe_array: np.ndarray | None = None
    image: np.ndarray | str | os.PathLike[str] | None = None
    image_role: str = "both"
    nphotons: float | None = 1e9
    seed: int = 0

    def validate(self) -> SimulationConfig:
        """Raise ConfigError naming the field for any invalid value; returns self."""
        _check_choice("object_kind", self.object_kind, OBJECT_KINDS)
        _check_choice("scan_kind", self.scan_kind, SCAN_KINDS)
        _check_choice("probe_kind", self.probe_kind, PROBE_KINDS)
        _check_choice("image_role", self.image_role, IMAGE_ROLES)
        _check_int("N", self.N, 4)
        if self.N % 2:
            raise ConfigError(f"SimulationConfig.N: expected an even number of pixels, got {self.N}")
        _check_int("n_images", self.n_images, 1)
        _check_int("margin", self.margin, 0)
        _check_int("seed", self.seed, 0)
        if not (math.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"SimulationConfig.step: expected a step > 0 pixels, got {self.step!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"SimulationConfig.jitter: expected a fraction of the step in [0, 1], got {self.jitter!r}")
        if self.probe_radius is not None and not self.probe_radius > 0:
            raise ConfigError(f"SimulationConfig.probe_radius: expected > 0 pixels or None, got {self.probe_radius!r}")
        if not math.isfinite(self.probe_defocus):
            raise ConfigError(f"SimulationConfig.probe_defocus: expected a finite phase in rad, got {self.probe_defocus!r}")
        if self.nphotons is not None and not (math.isfinite(self.nphotons) and self.nphotons > 0):
            raise ConfigError(f"SimulationConfig.nphotons: expected a count > 0 or None, got {self.nphotons!r}")
        if self.object_size is not None:
            size = tuple(self.object_size)
            if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                     for s in size):
                raise ConfigError(f"SimulationConfig.object_size: expected (H, W) positive integers or None, "
                                  f"got {self.object_size!r}")
        if self.object_kind == "image" and self.image is None:
            raise ConfigError("SimulationConfig.image: expected an array or a PNG path for object_kind='image', got None")
        if self.probe_kind == "array":
            probe = self.probe_array
            if probe is None or np.ndim(probe) != 2 or np.shape(probe) != (self.N, self.N):
                got = None if probe is None else np.shape(probe)
                raise ConfigError(f"SimulationConfig.probe_array: expected a complex ({self.N}, {self.N}) array "
                                  f"for probe_kind='array', got {'None' if got is None else f'shape {got}'}")
        return self


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"SimulationConfig.{name}: expected one of {choices}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"SimulationConfig.{name}: expected an integer >= {minimum}, got {value!r}")


# ------------------------------------------------------------------------------------------ scans
def scan_positions(kind: str, n_images: int, step: float, rng: np.random.Generator,
                   jitter: float = 0.25) -> np.ndarray:
    """Scan positions (x, y) in pixels relative to an arbitrary origin, float64 (n_images, 2).

    'raster': row-major grid of ceil(sqrt(n)) columns with pitch `step` (the first n points);
    'jittered': raster + uniform noise in [-jitter * step, jitter * step] on each coordinate;
    'random': uniform over the raster's extent;
    'fermat': Fermat spiral r_k = step * sqrt((k + 0.5) / pi), angle_k = k * golden angle
        (one position per step**2 of area, like a raster).
    """
    _check_choice("scan_kind", kind, SCAN_KINDS)
    n_cols = math.ceil(math.sqrt(n_images))
    n_rows = math.ceil(n_images / n_cols)
    if kind == "fermat":
        k = np.arange(n_images, dtype=np.float64)
        radius = step * np.sqrt((k + 0.5) / np.pi)
        angle = k * np.pi * (3.0 - np.sqrt(5.0))
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    if kind == "random":
        extent = np.array([n_cols - 1, n_rows - 1], dtype=np.float64) * step
        return rng.uniform(0.0, 1.0, size=(n_images, 2)) * extent
    index = np.arange(n_images)
    grid = np.stack([index % n_cols, index // n_cols], axis=1).astype(np.float64) * step
    if kind == "jittered":
        grid += rng.uniform(-jitter * step, jitter * step, size=grid.shape)
    return grid


def place_scan(relative: np.ndarray, N: int, object_size: tuple[int, int] | None = None,
               margin: int = 4) -> tuple[np.ndarray, tuple[int, int]]:
    """Shift relative positions (x, y) so that every patch lies inside the object with `margin` pixels.

    A position is valid when margin + N/2 <= y <= H - 1 - N/2 - margin (same for x with W): the patch
    and its interpolation neighbours (row y + N/2 for a fractional y) plus `margin` pixels lie inside
    the object. The scan is centred in the object
    by an integer shift (integer relative positions stay integer).
    object_size: (H, W), or None for the smallest object that holds the scan.
    Returns (positions float64 (n, 2), (H, W)). Raises ConfigError when the scan does not fit.
    """
    relative = np.asarray(relative, dtype=np.float64)
    low = relative.min(axis=0)
    span = relative.max(axis=0) - low  # (x span, y span)
    needed = np.ceil(span).astype(int) + N + 1 + 2 * margin  # (W, H)
    if object_size is None:
        height, width = int(needed[1]), int(needed[0])
    else:
        height, width = int(object_size[0]), int(object_size[1])
        if width < needed[0] or height < needed[1]:
            raise ConfigError(
                f"SimulationConfig.object_size: the scan (span {span[0]:.1f} x {span[1]:.1f} px in x, y) with "
                f"N={N} and margin={margin} needs an object of at least (H, W) = ({needed[1]}, {needed[0]}), "
                f"got ({height}, {width})"
            )
    slack = np.array([width, height]) - 1 - N - 2 * margin - span
    offset = N // 2 + margin + np.floor(slack / 2)
    return relative - low + offset, (height, width)


# ---------------------------------------------------------------------------------------- objects
def make_object(kind: str, shape: tuple[int, int], rng: np.random.Generator, *,
                image: np.ndarray | None = None, image_role: str = "both") -> np.ndarray:
    """A complex64 (H, W) object of the given kind.

    'lines': random blurred strokes, dark in amplitude and bright in phase (independent stroke sets);
    'grf': Gaussian random fields (white noise filtered with a Gaussian of sigma GRF_CORRELATION_PX);
    'points': sparse Gaussian blobs that lower the amplitude and raise the phase;
    'image': `image` (from `load_image`), resized to `shape` when needed; see `image_object`.
    Generated kinds have amplitude in [0.5, 1] and phase in [-1, 1] rad, both attaining the extremes.
    """
    if kind not in OBJECT_KINDS:
        raise ConfigError(f"SimulationConfig.object_kind: expected one of {OBJECT_KINDS}, got {kind!r}")
    if kind == "image":
        if image is None:
            raise ConfigError("SimulationConfig.image: expected an array or a PNG path for object_kind='image', got None")
        return image_object(image, shape, image_role)
    if kind == "lines":
        amplitude = 1.0 - _normalise(_lines(shape, rng))
        phase = _normalise(_lines(shape, rng))
    elif kind == "grf":
        amplitude = _normalise(_gaussian_field(shape, rng))
        phase = _normalise(_gaussian_field(shape, rng))
    else:
        blobs = _normalise(_points(shape, rng))
        amplitude, phase = 1.0 - blobs, blobs
    return _complex_object(amplitude, phase)


def _complex_object(amplitude01: np.ndarray, phase01: np.ndarray) -> np.ndarray:
    """Map unit-range maps to amplitude AMPLITUDE_RANGE and phase PHASE_RANGE, complex64."""
    amplitude = AMPLITUDE_RANGE[0] + (AMPLITUDE_RANGE[1] - AMPLITUDE_RANGE[0]) * amplitude01
    phase = PHASE_RANGE[0] + (PHASE_RANGE[1] - PHASE_RANGE[0]) * phase01
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _normalise(image: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] (min -> 0, max -> 1); a constant image becomes zeros."""
    low, high = float(image.min()), float(image.max())
    if high - low <= 0:
        return np.zeros_like(image, dtype=np.float64)
    return (image - low) / (high - low)


def _lines(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sum of anti-aliased straight strokes (width LINE_WIDTH_PX) at random places, then blurred."""
    height, width = shape
    canvas = np.zeros(shape, dtype=np.float64)
    n_lines = max(1, round(LINES_PER_PIXEL * height * width))
    centres = rng.uniform(0.0, 1.0, size=(n_lines, 2)) * [width, height]
    angles = rng.uniform(0.0, np.pi, size=n_lines)
    lengths = rng.uniform(*LINE_LENGTH_PX, size=n_lines)
    half_width = LINE_WIDTH_PX / 2
    for centre, angle, length in zip(centres, angles, lengths):
        direction = np.array([np.cos(angle), np.sin(angle)])
        start = centre - 0.5 * length * direction
        end = centre + 0.5 * length * direction
        x0, y0 = np.floor(np.minimum(start, end) - half_width - 1).astype(int)
        x1, y1 = np.ceil(np.maximum(start, end) + half_width + 1).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        # distance from each pixel to the segment start..end
        t = np.clip((xs - start[0]) * direction[0] + (ys - start[1]) * direction[1], 0.0, length)
        distance = np.hypot(xs - start[0] - t * direction[0], ys - start[1] - t * direction[1])
        canvas[y0:y1 + 1, x0:x1 + 1] += np.clip(half_width + 0.5 - distance, 0.0, 1.0)
    return ndimage.gaussian_filter(canvas, BLUR_SIGMA_PX)


def _gaussian_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """White noise filtered by a Gaussian (periodic boundaries): a smooth, band-limited random field."""
    return ndimage.gaussian_filter(rng.standard_normal(shape), GRF_CORRELATION_PX, mode="wrap")


def _points(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sparse Gaussian blobs of random strength at random pixels."""
    height, width = shape
    n_points = max(1, round(POINTS_PER_PIXEL * height * width))
    canvas = np.zeros(shape, dtype=np.float64)
    rows = rng.integers(0, height, size=n_points)
    cols = rng.integers(0, width, size=n_points)
    np.add.at(canvas, (rows, cols), rng.uniform(0.5, 1.0, size=n_points))
    return ndimage.gaussian_filter(canvas, POINT_SIGMA_PX)


def load_image(source: np.ndarray | str | os.PathLike[str]) -> np.ndarray:
    """An image as a 2-D array: complex arrays as is, anything else as float64 grey values.

    source: a 2-D real or complex array, an RGB(A) array (H, W, 3|4), or a PNG path (read with
    matplotlib.image.imread). Colour is converted to grey with the Rec. 601 luma weights; alpha is dropped.
    Raises FileNotFoundError for a missing file and ConfigError for anything that is not an image.
    """
    if isinstance(source, (str, os.PathLike)):
        from matplotlib import image as mpl_image

        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file not found")
        try:
            array = np.asarray(mpl_image.imread(path))
        except (OSError, ValueError, SyntaxError) as exc:
            raise ConfigError(f"{path}: cannot be read as a PNG image ({type(exc).__name__}: {exc})") from exc
        name = str(path)
    else:
        array = np.asarray(source)
        name = "SimulationConfig.image"
    if not np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
        raise ConfigError(f"{name}: expected a numeric image, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4) and not np.iscomplexobj(array):
        array = array[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if array.ndim != 2 or min(array.shape) < 1:
        raise ConfigError(f"{name}: expected a 2-D image (H, W) or a colour image (H, W, 3|4), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{name}: expected finite values, got NaN/inf")
    return array if np.iscomplexobj(array) else array.astype(np.float64)


def image_object(image: np.ndarray, shape: tuple[int, int], role: str = "both") -> np.ndarray:
    """A complex64 (H, W) object from an image (see `load_image`).

    A complex image is the object itself and must already have `shape`. A real image is resized to
    `shape` (bilinear, anti-aliased), rescaled to [0, 1] and mapped to amplitude 0.5..1 and/or phase
    -1..1 rad according to role: 'both', 'amplitude' (phase 0) or 'phase' (amplitude 1).
    """
    _check_choice("image_role", role, IMAGE_ROLES)
    shape = (int(shape[0]), int(shape[1]))
    if np.iscomplexobj(image):
        if image.shape != shape:
            raise ConfigError(f"SimulationConfig.image: a complex image is used as the object as is and must "
                              f"have the object's shape {shape}, got {image.shape}")
        return image.astype(np.complex64)
    if image.shape != shape:
        from skimage.transform import resize

        image = resize(image, shape, order=1, mode="edge", anti_aliasing=True)
    grey = _normalise(image)
    amplitude = grey if role in ("both", "amplitude") else np.ones_like(grey)
    phase = grey if role in ("both", "phase") else np.full_like(grey, 0.5)
    return _complex_object(amplitude, phase)


# ----------------------------------------------------------------------------------------- probes
def make_probe(kind: str, N: int, *, radius: float | None = None, defocus: float = 1.0) -> np.ndarray:
    """A complex64 (N, N) probe of peak amplitude 1, centred at pixel (N/2, N/2).

    'disk': amplitude 0.5 * erfc((r - radius) / (sqrt(2) * radius / 8)), a disk with a soft (Gaussian
        error-function) edge, 0.5 at r = radius, so the far field has little ringing;
    'gaussian': amplitude exp(-(r / radius)^2).
    Both carry a defocus-like phase `defocus * (r / radius)^2` rad. radius: pixels, None -> N / 4.
    """
    if kind not in ("disk", "gaussian"):
        raise ConfigError(f"SimulationConfig.probe_kind: expected 'disk' or 'gaussian' here, got {kind!r}")
    radius = N / 4 if radius is None else float(radius)
    yy, xx = np.mgrid[0:N, 0:N] - N // 2
    r = np.hypot(xx, yy)
    if kind == "disk":
        edge = radius / 8
        amplitude = 0.5 * special.erfc((r - radius) / (np.sqrt(2.0) * edge))
    else:
        amplitude = np.exp(-((r / radius) ** 2))
    amplitude /= amplitude.max()
    return (amplitude * np.exp(1j * defocus * (r / radius) ** 2)).astype(np.complex64)


# ------------------------------------------------------------------------------------------ noise
_NOISE_CHUNK = 256  # patterns per chunk of Poisson sampling
def add_poisson_noise(amplitudes: np.ndarray, nphotons: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Scale noise-free amplitudes to `nphotons` mean total counts per pattern and draw Poisson counts.

    amplitudes: float (n, N, N) noise-free amplitudes for an unscaled probe.
    Returns (noisy amplitudes float32 (n, N, N) = sqrt(counts), probe scale s). The expected counts are
    (s * amplitudes)^2 with s = sqrt(nphotons / mean(sum(amplitudes^2 over each pattern))), i.e. those of
    the probe multiplied by s (the forward model is linear in the probe).
    """
    amplitudes = np.asarray(amplitudes)
    mean_total = float(np.einsum("nij,nij->n", amplitudes, amplitudes, dtype=np.float64).mean())
    if not mean_total > 0:
        raise ValueError(f"add_poisson_noise: expected patterns with non-zero intensity, got mean total {mean_total}")
    scale = math.sqrt(nphotons / mean_total)
    noisy = np.empty(amplitudes.shape, dtype=np.float32)
    for start in range(0, len(amplitudes), _NOISE_CHUNK):  # chunks bound the float64 temporaries
        expected = (scale * amplitudes[start:start + _NOISE_CHUNK].astype(np.float64)) ** 2
        noisy[start:start + _NOISE_CHUNK] = np.sqrt(rng.poisson(expected).astype(np.float64))
    return noisy, scale


# ---------------------------------------------------------------------------------------- simulate
def simulate(config: SimulationConfig) -> ScanData:
    """Simulate a scan with ground truth.

    Returns a ScanData with float32 amplitudes (Poisson-noisy unless nphotons is None), float64
    positions (x, y), the probe (complex64, scaled so that expected counts are exactly
    |fftshift(fft2(probe * patch, norm='ortho'))|^2; unscaled, peak amplitude 1, when nphotons is None),
    the ground-truth object and metadata (nphotons; extra: seed, object/probe/scan kind, step, jitter).
    """
    from ptycho import physics  # imports Keras/TensorFlow: only when the forward model runs

    config.validate()
    scan_rng, object_rng, noise_rng = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(config.seed).spawn(3))
    relative = scan_positions(config.scan_kind, config.n_images, config.step, scan_rng, config.jitter)
    image = load_image(config.image) if config.object_kind == "image" else None
    size = config.object_size
    if size is None and image is not None:
        size = image.shape
    positions, shape = place_scan(relative, config.N, size, config.margin)
    obj = make_object(config.object_kind, shape, object_rng, image=image, image_role=config.image_role)
    if config.probe_kind == "array":
        probe = np.asarray(config.probe_array).astype(np.complex64)
    else:
        probe = make_probe(config.probe_kind, config.N, radius=config.probe_radius, defocus=config.probe_defocus)

    amplitudes = physics.diffraction_amplitudes(obj, probe, positions)
    if config.nphotons is not None:
        amplitudes, scale = add_poisson_noise(amplitudes, config.nphotons, noise_rng)
        probe = (probe * scale).astype(np.complex64)

    extra = {"seed": int(config.seed), "object_kind": config.object_kind, "probe_kind": config.probe_kind,
             "scan_kind": config.scan_kind, "step": float(config.step)}
    if config.scan_kind == "jittered":
        extra["jitter"] = float(config.jitter)
    return ScanData(
        amplitudes=amplitudes,
        positions=positions,
        probe=probe,
        object=obj,
        metadata=ScanMetadata(nphotons=None if config.nphotons is None else float(config.nphotons), extra=extra),
        source=f"<simulated {config.object_kind}, seed {config.seed}>",
    )
