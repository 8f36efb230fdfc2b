"""The differentiable forward model: the one physics implementation used by training and simulation.

Written with `keras.ops` only (backend-agnostic) and XLA-compatible: no Python loops over patterns,
no TensorFlow image-projective-transform kernels. Conventions (docs/conventions.md):
- complex images are real tensors with a trailing axis of size 2: [..., 0] = real, [..., 1] = imag;
- positions/offsets are (x, y) in pixels; a patch of position p covers rows p_y - N/2 ... p_y + N/2 - 1;
- `translate` moves content by +shift;
- far field: amplitude = |fftshift(fft2(probe * patch, norm='ortho'))|, zero frequency at N//2.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from keras import ops

from ptycho import backend

# --------------------------------------------------------------------------- complex helpers


def complex_to_pair(z: np.ndarray) -> np.ndarray:
    """NumPy complex (...,) -> float32 (..., 2)."""
    z = np.asarray(z)
    return np.stack([z.real, z.imag], axis=-1).astype(np.float32)


def pair_to_complex(x: np.ndarray) -> np.ndarray:
    """float (..., 2) -> NumPy complex64 (...,)."""
    x = backend.to_numpy(x)
    return (x[..., 0] + 1j * x[..., 1]).astype(np.complex64)


def complex_multiply(a, b):
    """(..., 2) x (..., 2) -> (..., 2) complex product."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return ops.stack([re, im], axis=-1)


def polar_to_pair(amplitude, phase):
    """Amplitude and phase (...,) -> complex pair (..., 2)."""
    return ops.stack([amplitude * ops.cos(phase), amplitude * ops.sin(phase)], axis=-1)


# --------------------------------------------------------------------------- bilinear sampling


def _sample_bilinear(images, rows, cols):
    """Sample images at fractional pixel coordinates, zero outside.

    images: (B, H, W, K) float; rows, cols: (B, P) float pixel coordinates (row = y, col = x).
    Returns (B, P, K). One flat gather per corner, so it compiles to four XLA gathers.
    """
    shape = ops.shape(images)
    b, h, w, k = shape[0], shape[1], shape[2], shape[3]
    flat = ops.reshape(images, (-1, k))
    batch_base = ops.reshape(ops.arange(b, dtype="int32") * (h * w), (-1, 1))
    r0 = ops.floor(rows)
    c0 = ops.floor(cols)
    fr = ops.expand_dims(rows - r0, -1)
    fc = ops.expand_dims(cols - c0, -1)
    r0 = ops.cast(r0, "int32")
    c0 = ops.cast(c0, "int32")
    out = None
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r = r0 + dr
        c = c0 + dc
        valid = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        index = batch_base + ops.clip(r, 0, h - 1) * w + ops.clip(c, 0, w - 1)
        values = ops.take(flat, index, axis=0)
        weight = (fr if dr else 1.0 - fr) * (fc if dc else 1.0 - fc)
        term = ops.where(ops.expand_dims(valid, -1), values * weight, 0.0)
        out = term if out is None else out + term
    return out


def _pixel_grid(n_rows: int, n_cols: int):
    """Row and column index grids, float32 (n_rows, n_cols)."""
    rows = ops.arange(n_rows, dtype="float32")
    cols = ops.arange(n_cols, dtype="float32")
    return (ops.broadcast_to(ops.expand_dims(rows, 1), (n_rows, n_cols)),
            ops.broadcast_to(ops.expand_dims(cols, 0), (n_rows, n_cols)))


def translate(images, shifts):
    """Move image content by +shift (bilinear, zero fill): out[r, c] = image[r - dy, c - dx].

    images: (B, H, W, K) float (K channels, e.g. 2 for a complex pair); shifts: (B, 2) (dx, dy) pixels.
    """
    h, w = images.shape[1], images.shape[2]
    grid_r, grid_c = _pixel_grid(h, w)
    rows = ops.reshape(grid_r, (1, -1)) - shifts[:, 1:2]
    cols = ops.reshape(grid_c, (1, -1)) - shifts[:, 0:1]
    return ops.reshape(_sample_bilinear(images, rows, cols), ops.shape(images))


def fourier_translate(images, shifts):
    """Move complex image content by +shift with exact band-limited (Fourier) interpolation.

    images: (..., H, W, 2) complex pair; shifts: (..., 2) (dx, dy) pixels, leading axes matching.
    Periodic: content leaving one edge re-enters at the other, so callers crop a margin.
    """
    h, w = images.shape[-3], images.shape[-2]
    ky = ops.convert_to_tensor(np.fft.fftfreq(h).astype(np.float32).reshape(h, 1))
    kx = ops.convert_to_tensor(np.fft.fftfreq(w).astype(np.float32).reshape(1, w))
    dx = shifts[..., 0][..., None, None]
    dy = shifts[..., 1][..., None, None]
    angle = -2.0 * np.pi * (kx * dx + ky * dy)
    re, im = ops.fft2((images[..., 0], images[..., 1]))
    spectrum = complex_multiply(ops.stack([re, im], -1), ops.stack([ops.cos(angle), ops.sin(angle)], -1))
    re, im = ops.ifft2((spectrum[..., 0], spectrum[..., 1]))
    return ops.stack([re, im], axis=-1)


INTERPOLATIONS = ("bilinear", "fourier")
_FOURIER_MARGIN = 4


def extract_patches(canvas, positions, patch_size: int, interpolation: str = "bilinear"):
    """Cut N x N patches centred at positions from a canvas.

    canvas: (B, H, W, K); positions: (B, C, 2) (x, y) canvas pixels -> (B, C, N, N, K).
    Patch index (N/2, N/2) samples canvas pixel (y, x). interpolation 'bilinear' (zero fill) works
    for any K; 'fourier' (complex pairs, K = 2) cuts an integer-aligned patch with a 4-pixel margin,
    shifts it by the fractional part with a Fourier phase ramp and crops the margin.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "bilinear":
        return _extract_bilinear(canvas, positions, patch_size)
    m = _FOURIER_MARGIN
    base = ops.floor(positions)
    wide = _extract_bilinear(canvas, base, patch_size + 2 * m)
    shifted = fourier_translate(wide, -(positions - base))
    return shifted[:, :, m:m + patch_size, m:m + patch_size, :]


def _extract_bilinear(canvas, positions, patch_size: int):
    n = patch_size
    grid_r, grid_c = _pixel_grid(n, n)
    half = float(n // 2)
    x = positions[..., 0][..., None, None]
    y = positions[..., 1][..., None, None]
    rows = ops.reshape(grid_r - half + y, (ops.shape(positions)[0], -1))
    cols = ops.reshape(grid_c - half + x, (ops.shape(positions)[0], -1))
    k = canvas.shape[-1]
    c = positions.shape[1]
    return ops.reshape(_sample_bilinear(canvas, rows, cols), (-1, c, n, n, k))


def merge_patches(patches, positions, canvas_shape: tuple[int, int], weight=None, min_weight: float = 1e-3):
    """Merge a group's patches into one canvas as their weighted mean (inverse of extract_patches).

    patches: (B, C, N, N, K); positions: (B, C, 2) (x, y) canvas pixels; canvas_shape: (H, W);
    weight: optional (N, N) per-pixel weight of every patch (default 1 everywhere), e.g. low outside
    the region the network predicts at full resolution. Returns (B, H, W, K); pixels whose total
    weight is below min_weight are 0.
    """
    c, n, k = patches.shape[1], patches.shape[2], patches.shape[4]
    h, w = canvas_shape
    if weight is None:
        weighted = ops.concatenate([patches, ops.ones_like(patches[..., :1])], axis=-1)
    else:
        weight = ops.reshape(ops.convert_to_tensor(weight, dtype=patches.dtype), (1, 1, n, n, 1))
        weighted = ops.concatenate([patches * weight, weight + ops.zeros_like(patches[..., :1])], axis=-1)
    flat_patches = ops.reshape(weighted, (-1, n, n, k + 1))
    grid_r, grid_c = _pixel_grid(h, w)
    half = float(n // 2)
    flat_pos = ops.reshape(positions, (-1, 2))
    rows = ops.reshape(grid_r, (1, -1)) - flat_pos[:, 1:2] + half
    cols = ops.reshape(grid_c, (1, -1)) - flat_pos[:, 0:1] + half
    sampled = ops.reshape(_sample_bilinear(flat_patches, rows, cols), (-1, c, h, w, k + 1))
    total = ops.sum(sampled, axis=1)
    weight_total = total[..., k:]
    safe = ops.where(weight_total > min_weight, weight_total, 1.0)
    return ops.where(weight_total > min_weight, total[..., :k] / safe, 0.0)


# --------------------------------------------------------------------------- illumination and propagation


def circular_mask(n: int) -> np.ndarray:
    """float32 (n, n): 1 inside the circle of radius n/2 centred at (n/2, n/2), else 0."""
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    return (np.hypot(yy, xx) < n / 2).astype(np.float32)


def solution_region_weight(n: int, region: int, border_weight: float) -> np.ndarray:
    """float32 (n, n) merge weight: 1 in the central region x region square, border_weight outside."""
    weight = np.full((n, n), border_weight, np.float32)
    start = (n - region) // 2
    weight[start:start + region, start:start + region] = 1.0
    return weight


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel, float32, radius ceil(3 sigma)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_smooth(images, sigma: float):
    """Separable Gaussian smoothing of (B, H, W, K) real images ('same' size, zero padding)."""
    if sigma <= 0:
        return images
    kernel = gaussian_kernel(sigma)
    k = images.shape[-1]
    size = len(kernel)
    kx = ops.convert_to_tensor(np.tile(kernel.reshape(1, size, 1, 1), (1, 1, k, 1)))
    ky = ops.convert_to_tensor(np.tile(kernel.reshape(size, 1, 1, 1), (1, 1, k, 1)))
    out = ops.depthwise_conv(images, kx, padding="same")
    return ops.depthwise_conv(out, ky, padding="same")


def far_field_intensity(exit_wave):
    """|fftshift(fft2(exit_wave, norm='ortho'))|^2 over the last two image axes.

    exit_wave: (..., N, N, 2) complex pair -> (..., N, N) float, zero frequency at index N//2.
    """
    n = exit_wave.shape[-2]
    re, im = ops.fft2((exit_wave[..., 0], exit_wave[..., 1]))
    intensity = (re * re + im * im) / float(n * n)
    return ops.roll(intensity, shift=(n // 2, n // 2), axis=(-2, -1))


def far_field_amplitude(exit_wave, eps: float = 1e-12):
    """Diffraction amplitude sqrt(far_field_intensity); eps keeps the gradient finite at zero."""
    return ops.sqrt(far_field_intensity(exit_wave) + eps)


def illuminate(patches, probe):
    """Exit waves = probe * patches. patches: (..., N, N, 2); probe: (N, N, 2) broadcast."""
    return complex_multiply(patches, probe)


def data_consistency_step(patches, probe, measured_amplitude, step_size, rel_eps: float = 1e-6):
    """One ePIE-like update of each patch towards its own measured diffraction (probe known, no overlap).

    patches: (..., N, N, 2) complex pair; probe: (N, N, 2); measured_amplitude: (..., N, N) measured
    AMPLITUDES divided by the intensity scale, so that |fftshift(fft2(probe * patch, norm='ortho'))| is
    their model; step_size: scalar. The exit wave psi = probe * patch gets the measured modulus with its
    own far-field phase (psi'), and patch += step_size * conj(probe) (psi' - psi) / max |probe|^2.
    rel_eps (a fraction of each pattern's mean far-field intensity) keeps the phase factor finite where
    the far field vanishes. Repeated, this is ePIE on each pattern alone: `ptycho.inference` uses it to
    refine predicted patches.
    """
    n = patches.shape[-2]
    psi = illuminate(patches, probe)
    re, im = ops.fft2((psi[..., 0], psi[..., 1]))  # unnormalised: the ortho far field times n
    power = re * re + im * im
    eps = rel_eps * ops.mean(power, axis=(-2, -1), keepdims=True) + 1e-30
    measured = ops.roll(measured_amplitude, shift=(-(n // 2), -(n // 2)), axis=(-2, -1))  # zero frequency at [0, 0]
    ratio = float(n) * measured / ops.sqrt(power + eps)
    re, im = ops.ifft2((re * ratio, im * ratio))
    difference = ops.stack([re, im], axis=-1) - psi
    conj_probe = ops.stack([probe[..., 0], -probe[..., 1]], axis=-1)
    weight = step_size / ops.max(ops.sum(ops.square(probe), axis=-1))
    return patches + weight * complex_multiply(difference, conj_probe)


# --------------------------------------------------------------------------- losses


def poisson_nll(predicted_amplitude, measured_amplitude, eps: float = 1e-8):
    """Mean Poisson negative log-likelihood of measured COUNTS (= amplitude^2) given predicted counts.

    Per pixel: lambda - n log(lambda), with lambda = predicted_amplitude^2, n = measured_amplitude^2
    (the data-only term log n! is dropped). Returns a scalar.
    """
    predicted = ops.square(predicted_amplitude)
    measured = ops.square(measured_amplitude)
    return ops.mean(predicted - measured * ops.log(predicted + eps))


def poisson_nll_offset(measured_amplitude, eps: float = 1e-8):
    """The NLL of a perfect prediction (lambda = n): subtract to get a deviance-like value >= 0."""
    measured = ops.square(measured_amplitude)
    return ops.mean(measured - measured * ops.log(measured + eps))


def amplitude_mae(predicted_amplitude, measured_amplitude):
    """Mean absolute error between AMPLITUDES."""
    return ops.mean(ops.abs(predicted_amplitude - measured_amplitude))


# --------------------------------------------------------------------------- NumPy entry point


def diffraction_amplitudes(
    obj: np.ndarray,
    probe: np.ndarray,
    positions: np.ndarray,
    *,
    batch_size: int = 256,
    interpolation: str = "fourier",
) -> np.ndarray:
    """Noise-free diffraction AMPLITUDES of a complex object scanned by a probe (XLA-compiled).

    obj: complex (H, W); probe: complex (N, N); positions: float (n, 2) (x, y) object pixels.
    Returns float32 (n, N, N) = |fftshift(fft2(probe * patch, norm='ortho'))|. Sub-pixel positions
    use band-limited (Fourier) interpolation by default, as a physical object would.
    """
    step = _compiled_step(probe.shape[-1], interpolation, with_probe=True)
    return _run_in_batches(step, obj, positions, batch_size, complex_to_pair(probe))


def object_patches(
    obj: np.ndarray,
    positions: np.ndarray,
    patch_size: int,
    *,
    batch_size: int = 256,
    interpolation: str = "fourier",
) -> np.ndarray:
    """complex64 (n, N, N) patches of obj (H, W) at positions (n, 2) (x, y), as the forward model cuts them."""
    step = _compiled_step(patch_size, interpolation, with_probe=False)
    return pair_to_complex(_run_in_batches(step, obj, positions, batch_size, None))


def _run_in_batches(step, obj: np.ndarray, positions: np.ndarray, batch_size: int, probe_pair) -> np.ndarray:
    """Apply a compiled per-position step in fixed-size batches (one compilation, padded tail)."""
    positions = np.asarray(positions, dtype=np.float32)
    canvas = ops.convert_to_tensor(complex_to_pair(obj)[None])
    extra = () if probe_pair is None else (ops.convert_to_tensor(probe_pair),)
    outputs = []
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        padded = np.zeros((1, batch_size, 2), dtype=np.float32)
        padded[0, : len(chunk)] = chunk
        result = step(canvas, ops.convert_to_tensor(padded), *extra)
        outputs.append(backend.to_numpy(result)[0, : len(chunk)])
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


@functools.lru_cache(maxsize=16)
def _compiled_step(patch_size: int, interpolation: str, with_probe: bool):
    """Compiled extract (-> illuminate -> propagate) per patch size, interpolation and kind."""

    def patches_only(canvas, positions):
        return extract_patches(canvas, positions, patch_size, interpolation)

    def amplitudes(canvas, positions, probe_pair):
        return ops.sqrt(far_field_intensity(illuminate(patches_only(canvas, positions), probe_pair)))

    return backend.compile_function(amplitudes if with_probe else patches_only)


def canvas_size(patch_size: int, local_offsets: np.ndarray | Sequence[float], gridsize: int) -> int:
    """Side of the square canvas that holds a group's patches: N + 2 * ceil(max |local offset|) (+ even)."""
    if gridsize == 1:
        return patch_size
    reach = float(np.max(np.abs(np.asarray(local_offsets)))) if np.size(local_offsets) else 0.0
    pad = int(math.ceil(reach)) + 1
    return patch_size + 2 * pad

