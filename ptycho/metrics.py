"""Image-quality metrics of a complex reconstruction against its ground truth (NumPy/SciPy/scikit-image).

`evaluate` is the whole pipeline: restrict both images to the scanned region, `align` the reconstruction
to the truth (sub-pixel registration, common crop, optional phase plane, global phase offset, amplitude
scale), then score amplitude and phase separately with SSIM, PSNR, MAE and Fourier ring correlation.

Conventions (see docs/conventions.md): images are complex (H, W) arrays indexed [row, col] = [y, x];
positions are object-pixel coordinates (x, y). Amplitude metrics are in amplitude units, phase metrics in
radians. The reconstruction's phase is taken relative to the truth's (angle(truth) + angle(recon /
truth)), so a reconstruction that agrees with the truth never differs from it by a 2*pi wrap.

Peak value of PSNR and `data_range` of SSIM: the truth's range max - min. For a constant truth (e.g. the
flat amplitude of a pure-phase object, up to rounding: see FLAT_RTOL) the range is undefined; a window of
width |value| (1 if the value is 0) centred on the constant is used instead.

PSNR is capped at PSNR_CAP_DB, so identical images score exactly PSNR_CAP_DB rather than infinity and
every metric is a finite float that `json.dump(..., allow_nan=False)` accepts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity
from skimage.registration import phase_cross_correlation

from ptycho.atomic import atomic_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PSNR_CAP_DB = 100.0
"""Upper bound of every PSNR (dB): an error below 1e-5 of the peak means the images agree to rounding."""

SPLINE_EDGE_PX = 4
"""Extra pixels cropped beyond the shift itself: the cubic spline's boundary handling reaches this far."""

MIN_SIDE = 7
"""Smallest image side that can be scored (scikit-image SSIM's 7 x 7 window)."""

FLAT_RTOL = 1e-6
"""A truth whose range is below this fraction of its largest |value| counts as constant (rounding noise)."""

CHANNELS = ("amp", "phase")


# ---------------------------------------------------------------------------------------------- region
def scanned_region(
    positions: np.ndarray,
    patch_size: int,
    shape: tuple[int, int],
    margin_fraction: float = 0.25,
) -> tuple[slice, slice]:
    """Bounding box (rows, cols) of the object pixels covered by the central part of the patches.

    positions: (n, 2) object-pixel coordinates (x, y) of the patch centres.
    patch_size: N, the patch side in pixels; the patch of (x, y) covers rows y - N/2 ... y + N/2 - 1.
    shape: (H, W) of the object; the box is clipped to it.
    margin_fraction: fraction of N dropped at each side of every patch (0 keeps whole patches, 0.25 keeps
        the central N/2 x N/2, where the probe is bright). Must lie in [0, 0.5).
    Only pixels wholly inside the box of the central parts are kept (start rounded up, stop down).
    Raises ValueError for malformed input or an empty box.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
        raise ValueError(f"scanned_region: positions: expected shape (n, 2) with n > 0, got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise ValueError("scanned_region: positions: expected finite values, got NaN/inf")
    if patch_size <= 0:
        raise ValueError(f"scanned_region: patch_size: expected a positive integer, got {patch_size}")
    if not 0.0 <= margin_fraction < 0.5:
        raise ValueError(f"scanned_region: margin_fraction: expected a value in [0, 0.5), got {margin_fraction}")
    half = patch_size * (0.5 - margin_fraction)
    bounds = []
    for axis, size in ((1, shape[0]), (0, shape[1])):  # rows come from y (column 1), cols from x (column 0)
        start = max(0, math.ceil(positions[:, axis].min() - half))
        stop = min(int(size), math.floor(positions[:, axis].max() + half))
        if stop <= start:
            raise ValueError(
                f"scanned_region: the central patch parts miss the {shape} object along "
                f"{'y' if axis == 1 else 'x'} (box {start}:{stop})"
            )
        bounds.append(slice(start, stop))
    return bounds[0], bounds[1]


def covered_region(
    positions: np.ndarray,
    patch_size: int,
    shape: tuple[int, int],
    margin_fraction: float = 0.25,
) -> tuple[slice, slice]:
    """The `scanned_region` box, trimmed until the central patch parts cover every pixel in it.

    A box scores pixels that no patch reached where the scan is not rectangular (a raster whose last
    row is partial, a round scan): those pixels hold a reconstruction's fill value and would dominate
    its errors. Edges are trimmed greedily, each time the edge row or column with the largest
    uncovered fraction. Same arguments as `scanned_region`; raises ValueError if nothing is left.
    """
    rows, cols = scanned_region(positions, patch_size, shape, margin_fraction)
    positions = np.asarray(positions, dtype=np.float64)
    half = patch_size * (0.5 - margin_fraction)
    height, width = rows.stop - rows.start, cols.stop - cols.start
    # the central part of (x, y) covers rows ceil(y - half) ... floor(y + half) - 1 (as scanned_region)
    r0 = np.clip(np.ceil(positions[:, 1] - half) - rows.start, 0, height).astype(np.int64)
    r1 = np.clip(np.floor(positions[:, 1] + half) - rows.start, 0, height).astype(np.int64)
    c0 = np.clip(np.ceil(positions[:, 0] - half) - cols.start, 0, width).astype(np.int64)
    c1 = np.clip(np.floor(positions[:, 0] + half) - cols.start, 0, width).astype(np.int64)
    corners = np.zeros((height + 1, width + 1), np.int64)  # 2-D difference array of the covered boxes
    for r, c, sign in ((r0, c0, 1), (r0, c1, -1), (r1, c0, -1), (r1, c1, 1)):
        np.add.at(corners, (r, c), sign)
    uncovered = np.cumsum(np.cumsum(corners, axis=0), axis=1)[:height, :width] <= 0
    top, bottom, left, right = 0, height, 0, width
    while bottom > top and right > left:
        box = uncovered[top:bottom, left:right]
        if not box.any():
            return slice(rows.start + top, rows.start + bottom), slice(cols.start + left, cols.start + right)
        edges = [box[0].mean(), box[-1].mean(), box[:, 0].mean(), box[:, -1].mean()]
        worst = int(np.argmax(edges))
        if worst == 0:
            top += 1
        elif worst == 1:
            bottom -= 1
        elif worst == 2:
            left += 1
        else:
            right -= 1
    raise ValueError(f"covered_region: no pixel of the {shape} object is covered by the central patch parts")


# ---------------------------------------------------------------------------------------------- alignment
def align(
    recon: np.ndarray,
    truth: np.ndarray,
    *,
    register: bool = True,
    remove_phase_plane: bool = False,
    upsample_factor: int = 20,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Align a complex reconstruction to the ground truth; both (H, W), any real or complex dtype.

    Steps, in order:
    1. remove_phase_plane: estimate and remove a linear phase ramp of recon / truth (done before
       registering too, since a steep ramp biases the correlation peak);
    2. register: sub-pixel shift (skimage phase_cross_correlation on the mean-free, Hann-windowed complex
       images, `upsample_factor` = 1/precision in px), applied to recon with a cubic spline (no
       wrap-around); then both images are cropped by ceil(|shift|) + SPLINE_EDGE_PX at every side so
       no extrapolated pixel is scored;
    3. multiply recon by exp(-1j * phase_offset), the amplitude-weighted mean phase of recon / truth;
    4. multiply recon by amplitude_scale, the least-squares scalar fit of |recon| to |truth|.

    Returns (aligned recon, truth cropped the same way), both complex128 (h, w), and info with
    'shift' (dy, dx) px applied to recon's content (it was displaced by -shift relative to the truth),
    'phase_plane' (gy, gx) rad/px removed from recon's phase (zeros unless asked), 'phase_offset' rad
    subtracted and 'amplitude_scale'. Raises ValueError for malformed images, an all-zero reconstruction
    or a shift that leaves less than MIN_SIDE pixels.
    """
    recon, truth = _complex_pair(recon, truth)
    plane = np.zeros(2)
    if remove_phase_plane:
        recon, plane = _remove_phase_plane(recon, truth, plane)
    shift = np.zeros(2)
    if register:
        shift = _registration_shift(recon, truth, upsample_factor)
        if np.any(shift != 0):
            recon = ndimage.shift(recon, shift, order=3, mode="nearest")
            recon, truth = _crop_margin(recon, truth, shift)
            if remove_phase_plane:
                recon, plane = _remove_phase_plane(recon, truth, plane)
    phase_offset = float(np.angle(np.vdot(truth, recon)))
    recon = recon * np.exp(-1j * phase_offset)
    amp_r, amp_t = np.abs(recon), np.abs(truth)
    power = float(np.sum(amp_r**2))
    if power == 0.0:
        raise ValueError("align: recon: expected a reconstruction with non-zero amplitude, got all zeros")
    amplitude_scale = float(np.sum(amp_r * amp_t)) / power
    info = {
        "shift": (float(shift[0]), float(shift[1])),
        "phase_plane": (float(plane[0]), float(plane[1])),
        "phase_offset": phase_offset,
        "amplitude_scale": amplitude_scale,
    }
    return recon * amplitude_scale, truth, info


def _complex_pair(recon: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two same-shape, finite 2-D images and return them as complex128."""
    out = []
    for name, image in (("recon", recon), ("truth", truth)):
        image = np.asarray(image)
        if image.ndim != 2 or min(image.shape) < MIN_SIDE:
            raise ValueError(
                f"{name}: expected a 2-D image of at least {MIN_SIDE} x {MIN_SIDE}, got shape {image.shape}"
            )
        if not np.issubdtype(image.dtype, np.number):
            raise ValueError(f"{name}: expected a real or complex image, got dtype {image.dtype}")
        if not np.all(np.isfinite(image)):
            bad = int(np.count_nonzero(~np.isfinite(image)))
            raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf")
        out.append(image.astype(np.complex128))
    if out[0].shape != out[1].shape:
        raise ValueError(f"recon: expected the truth's shape {out[1].shape}, got {out[0].shape}")
    return out[0], out[1]


def _hann_mean_free(image: np.ndarray) -> np.ndarray:
    """image - mean, tapered to zero at the edges by a separable Hann window (kills the FFT's edge jumps)."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    return (image - image.mean()) * window


def _registration_shift(recon: np.ndarray, truth: np.ndarray, upsample_factor: int) -> np.ndarray:
    """Shift (dy, dx) px that moves recon's content onto the truth's."""
    shift, _, _ = phase_cross_correlation(
        _hann_mean_free(truth), _hann_mean_free(recon), upsample_factor=upsample_factor, normalization=None
    )
    return np.asarray(shift, dtype=np.float64)


def _crop_margin(recon: np.ndarray, truth: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both images by the pixels a spline shift by `shift` had to extrapolate, plus SPLINE_EDGE_PX."""
    margins = [math.ceil(abs(s)) + SPLINE_EDGE_PX if s != 0 else 0 for s in shift]
    h, w = recon.shape
    if min(h - 2 * margins[0], w - 2 * margins[1]) < MIN_SIDE:
        raise ValueError(
            f"align: registration shift (dy={shift[0]:.2f}, dx={shift[1]:.2f}) px leaves less than "
            f"{MIN_SIDE} px of the {recon.shape} images; are recon and truth the same field of view?"
        )
    crop = (slice(margins[0], h - margins[0]), slice(margins[1], w - margins[1]))
    return recon[crop], truth[crop]


def _remove_phase_plane(recon: np.ndarray, truth: np.ndarray, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the linear phase ramp of recon / truth; return (recon, plane + removed slopes (gy, gx) rad/px).

    The slope along each axis is the amplitude-weighted mean phase step between neighbouring pixels of
    recon * conj(truth), which is insensitive to 2*pi wraps (valid for slopes below pi rad/px).
    """
    d = recon * np.conj(truth)
    gy = float(np.angle(np.vdot(d[:-1, :], d[1:, :])))
    gx = float(np.angle(np.vdot(d[:, :-1], d[:, 1:])))
    rows = np.arange(recon.shape[0]) - (recon.shape[0] - 1) / 2
    cols = np.arange(recon.shape[1]) - (recon.shape[1] - 1) / 2
    ramp = np.exp(-1j * (gy * rows[:, None] + gx * cols[None, :]))
    return recon * ramp, plane + (gy, gx)


# ---------------------------------------------------------------------------------------------- scores
def frc(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two real (H, W) images.

    Both are made mean-free and Hann-windowed, then FRC(k) = Re sum A conj(B) / sqrt(sum|A|^2 sum|B|^2)
    over the Fourier pixels of ring k, k = 1 ... min(H, W) // 2 (DC is left out). Returns
    (freqs, curve), each (min(H, W) // 2,): freqs = k / (min(H, W) // 2) as a fraction of Nyquist
    (1.0 = 0.5 cycles/px; on non-square images the radius is measured in per-axis Nyquist units). A
    ring with no power in either image counts as agreement (1.0); with power in only one, as 0.0.
    FRC measures correlation, not attenuation: a noise-free linear blur with a positive transfer function
    (e.g. a Gaussian) leaves it at 1; it falls where noise or errors outweigh the remaining signal.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or min(a.shape) < 2:
        raise ValueError(f"frc: expected two real 2-D images of one shape, got {a.shape} and {b.shape}")
    fa, fb = np.fft.fft2(_hann_mean_free(a)), np.fft.fft2(_hann_mean_free(b))
    n_rings = min(a.shape) // 2
    radius = np.hypot(np.fft.fftfreq(a.shape[0])[:, None] * 2, np.fft.fftfreq(a.shape[1])[None, :] * 2)
    ring = np.rint(radius * n_rings).astype(np.int64)
    keep = (ring >= 1) & (ring <= n_rings)

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring[keep], weights=values[keep], minlength=n_rings + 1)[1:]

    cross = ring_sum((fa * np.conj(fb)).real)
    power_a, power_b = ring_sum(np.abs(fa) ** 2), ring_sum(np.abs(fb) ** 2)
    denominator = np.sqrt(power_a * power_b)
    curve = np.where(power_a + power_b == 0, 1.0, 0.0)
    np.divide(cross, denominator, out=curve, where=denominator > 0)
    return np.arange(1, n_rings + 1) / n_rings, curve


def frc_crossing(freqs: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """First frequency where `curve` falls below `threshold`, linearly interpolated between rings.

    Returns freqs[0] if the first ring is already below, 1.0 (Nyquist) if the curve never falls below.
    """
    freqs, curve = np.asarray(freqs, dtype=np.float64), np.asarray(curve, dtype=np.float64)
    if freqs.ndim != 1 or freqs.shape != curve.shape or len(freqs) == 0:
        raise ValueError(f"frc_crossing: expected two 1-D arrays of one length, got {freqs.shape} and {curve.shape}")
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return 1.0
    k = int(below[0])
    if k == 0:
        return float(freqs[0])
    t = (curve[k - 1] - threshold) / (curve[k - 1] - curve[k])
    return float(freqs[k - 1] + t * (freqs[k] - freqs[k - 1]))


def evaluate(
    recon: np.ndarray,
    truth: np.ndarray,
    *,
    region: tuple[slice, slice] | None = None,
    register: bool = True,
    remove_phase_plane: bool = False,
) -> dict[str, float]:
    """Score a complex (H, W) reconstruction against the complex (H, W) ground truth.

    region: (rows, cols) slices applied to both images first, e.g. from `scanned_region`; None = all.
    register, remove_phase_plane: passed to `align`.
    Returns plain floats, for c in ('amp', 'phase'):
      {c}_ssim     SSIM (skimage, data_range = the truth's range), 1 = identical;
      {c}_psnr     PSNR in dB with peak = the truth's range, capped at PSNR_CAP_DB;
      {c}_psnr255  PSNR in dB after mapping both images to 0..255 with the truth's min/max and clipping
                   to 0..255 (8-bit image convention); equals {c}_psnr unless the reconstruction leaves
                   the truth's range;
      {c}_mae      mean absolute error (amplitude units or radians);
      {c}_frc50    first crossing of FRC = 0.5, fraction of Nyquist (1.0 = never below);
      {c}_frc17    first crossing of FRC = 1/7, fraction of Nyquist;
    and the alignment: shift_y, shift_x (px applied to recon), phase_offset (rad), amplitude_scale.
    """
    if region is not None:
        recon, truth = np.asarray(recon)[region], np.asarray(truth)[region]
    aligned, truth, info = align(recon, truth, register=register, remove_phase_plane=remove_phase_plane)
    metrics: dict[str, float] = {}
    for name, (x, ref) in zip(CHANNELS, _channels(aligned, truth)):
        metrics.update({f"{name}_{key}": value for key, value in _channel_metrics(x, ref).items()})
    metrics.update(
        shift_y=info["shift"][0],
        shift_x=info["shift"][1],
        phase_offset=info["phase_offset"],
        amplitude_scale=info["amplitude_scale"],
    )
    return metrics


def _channels(recon: np.ndarray, truth: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((|recon|, |truth|), (phase of recon, phase of truth)); recon's phase unwrapped relative to truth's."""
    truth_phase = np.angle(truth)
    return (np.abs(recon), np.abs(truth)), (truth_phase + np.angle(recon * np.conj(truth)), truth_phase)


def _display_range(ref: np.ndarray) -> tuple[float, float]:
    """(low, high) of the truth; a constant truth v gets the window v -/+ |v| / 2 (-/+ 0.5 if v = 0).

    "Constant" allows rounding noise: a range below FLAT_RTOL times the largest |value|.
    """
    low, high = float(ref.min()), float(ref.max())
    if high - low > FLAT_RTOL * max(abs(low), abs(high)):
        return low, high
    centre = float(ref.mean())
    half = abs(centre) / 2 if centre != 0 else 0.5
    return centre - half, centre + half


def _psnr(x: np.ndarray, ref: np.ndarray, peak: float) -> float:
    mse = float(np.mean((x - ref) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(peak**2 / mse))


def _channel_metrics(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR (range and 255 peak), MAE and FRC crossings of one real channel x against ref."""
    low, high = _display_range(ref)
    data_range = high - low
    freqs, curve = frc(x, ref)

    def to_255(image: np.ndarray) -> np.ndarray:
        return np.clip((image - low) * (255.0 / data_range), 0.0, 255.0)

    return {
        "ssim": float(structural_similarity(ref, x, data_range=data_range)),
        "psnr": _psnr(x, ref, data_range),
        "psnr255": _psnr(to_255(x), to_255(ref), 255.0),
        "mae": float(np.mean(np.abs(x - ref))),
        "frc50": frc_crossing(freqs, curve, 0.5),
        "frc17": frc_crossing(freqs, curve, 1.0 / 7.0),
    }


# ---------------------------------------------------------------------------------------------- figure
def comparison_figure(
    recon: np.ndarray,
    truth: np.ndarray,
    path: str | os.PathLike,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a figure of amplitude and phase of truth, reconstruction and their difference; return path.

    recon, truth: complex (h, w), normally the aligned pair returned by `align` (the figure shows them as
    given). Reconstruction and truth share the truth's colour scale. metrics: `evaluate`'s output, shown
    in the title when given. The format follows the suffix of `path` (png when none); the file is written
    atomically (temporary file in the same folder, then os.replace). Uses no pyplot global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recon, truth = _complex_pair(recon, truth)
    path = Path(path)
    fig = Figure(figsize=(12, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    for row, (name, (x, ref)) in zip(axes, zip(("amplitude", "phase (rad)"), _channels(recon, truth))):
        low, high = _display_range(ref)
        diff = x - ref
        limit = float(np.abs(diff).max()) or 1.0
        panels = (
            (f"truth {name}", ref, "gray", low, high),
            (f"reconstruction {name}", x, "gray", low, high),
            (f"difference {name}", diff, "RdBu_r", -limit, limit),
        )
        for ax, (title, image, cmap, vmin, vmax) in zip(row, panels):
            shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title)
            ax.set_axis_off()
            fig.colorbar(shown, ax=ax, shrink=0.8)
    if metrics:
        fig.suptitle(
            "   ".join(
                f"{label}: SSIM {metrics[f'{c}_ssim']:.4f}, PSNR {metrics[f'{c}_psnr']:.2f} dB, "
                f"FRC50 {metrics[f'{c}_frc50']:.3f}"
                for c, label in zip(CHANNELS, ("amplitude", "phase"))
            )
        )
    _save_atomic(fig, path)
    return path


def _save_atomic(fig: Figure, path: Path) -> None:
    """Save a matplotlib Figure to path via a temporary file in the same folder and os.replace."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png")
