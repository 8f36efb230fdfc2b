"""Tests of ptycho.simulate: determinism, objects, probes, scans, forward model and Poisson noise.

The forward model is checked against an independent NumPy implementation (np.fft, explicit patches;
sub-pixel shifts by a Fourier phase ramp on an integer-aligned patch with a 4-pixel border, the
interpolation of ptycho.physics.diffraction_amplitudes).
"""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.config.config import ConfigError
from ptycho.simulate import (
    OBJECT_KINDS,
    SCAN_KINDS,
    SimulationConfig,
    add_poisson_noise,
    load_image,
    make_object,
    make_probe,
    place_scan,
    scan_positions,
    simulate,
)

N = 32
SMALL = dict(N=N, n_images=25, step=5.0)


# ------------------------------------------------------------------------ independent reference
BORDER = 4  # pixels around a patch used by the sub-pixel (Fourier) shift, then cropped


def numpy_patches(obj: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Patches (n_pos, n, n): patch pixel (i, j) samples object (y - n/2 + i, x - n/2 + j).

    Integer positions are plain slices; the fractional part is applied as a Fourier phase ramp to the
    integer-aligned patch widened by BORDER pixels on each side.
    """
    out = np.empty((len(positions), n, n), dtype=np.complex128)
    wide = n + 2 * BORDER
    ky, kx = np.fft.fftfreq(wide)[:, None], np.fft.fftfreq(wide)[None, :]
    for k, (x, y) in enumerate(positions):
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        top, left = y0 - n // 2 - BORDER, x0 - n // 2 - BORDER
        assert top >= 0 and left >= 0
        patch = obj[top:top + wide, left:left + wide]
        ramp = np.exp(2j * np.pi * (kx * (x - x0) + ky * (y - y0)))  # content moves by -(fraction)
        shifted = np.fft.ifft2(np.fft.fft2(patch) * ramp)
        out[k] = shifted[BORDER:BORDER + n, BORDER:BORDER + n]
    return out


def numpy_amplitudes(obj: np.ndarray, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    exit_waves = probe.astype(np.complex128) * numpy_patches(obj.astype(np.complex128), positions, probe.shape[0])
    return np.abs(np.fft.fftshift(np.fft.fft2(exit_waves, norm="ortho"), axes=(-2, -1)))


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------- determinism
def test_same_seed_identical_different_seed_different():
    config = SimulationConfig(object_kind="lines", scan_kind="jittered", nphotons=1e4, seed=3, **SMALL)
    a, b = simulate(config), simulate(config)
    c = simulate(SimulationConfig(object_kind="lines", scan_kind="jittered", nphotons=1e4, seed=4, **SMALL))
    np.testing.assert_array_equal(a.amplitudes, b.amplitudes)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.object, b.object)
    np.testing.assert_array_equal(a.probe, b.probe)
    assert not np.array_equal(a.object, c.object)
    assert not np.allclose(a.positions, c.positions)
    assert not np.array_equal(a.amplitudes, c.amplitudes)


def test_noise_stream_is_independent_of_object_and_scan():
    noisy = simulate(SimulationConfig(nphotons=1e4, seed=5, **SMALL))
    clean = simulate(SimulationConfig(nphotons=None, seed=5, **SMALL))
    np.testing.assert_array_equal(noisy.object, clean.object)
    np.testing.assert_array_equal(noisy.positions, clean.positions)


def test_metadata_records_the_simulation():
    scan = simulate(SimulationConfig(object_kind="grf", scan_kind="fermat", probe_kind="gaussian",
                                     nphotons=1e5, seed=7, **SMALL))
    assert scan.metadata.nphotons == 1e5
    assert scan.metadata.extra == {"seed": 7, "object_kind": "grf", "probe_kind": "gaussian",
                                   "scan_kind": "fermat", "step": 5.0}
    assert scan.amplitudes.shape == (25, N, N) and scan.amplitudes.dtype == np.float32
    assert scan.positions.shape == (25, 2) and scan.probe.shape == (N, N)
    assert scan.object.dtype == np.complex64


# ----------------------------------------------------------------------------------- objects
@pytest.mark.parametrize("kind", [k for k in OBJECT_KINDS if k != "image"])
def test_object_ranges_shapes_and_smoothness(kind):
    obj = make_object(kind, (96, 160), np.random.default_rng(0))
    assert obj.shape == (96, 160) and obj.dtype == np.complex64
    amplitude, phase = np.abs(obj), np.angle(obj)
    assert amplitude.min() == pytest.approx(0.5, abs=1e-5) and amplitude.max() == pytest.approx(1.0, abs=1e-5)
    assert phase.min() == pytest.approx(-1.0, abs=1e-5) and phase.max() == pytest.approx(1.0, abs=1e-5)
    for part in (amplitude, phase):
        assert part.std() > 0.01
        power = np.abs(np.fft.fft2(part - part.mean())) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(96), np.fft.fftfreq(160), indexing="ij")
        # band-limited: almost no power above 0.25 cycles/pixel (white noise would have ~80 % there)
        assert power[np.hypot(fx, fy) > 0.25].sum() / power.sum() < 0.05


def test_lines_object_is_mostly_background():
    obj = make_object("lines", (256, 256), np.random.default_rng(1))
    # strokes are sparse: a large part of the object keeps the background amplitude 1 and phase -1
    # (the reference lines object: 57 % and 54 %)
    assert np.mean(np.abs(obj) > 0.99) > 0.3
    assert np.mean(np.angle(obj) < -0.99) > 0.3


def test_png_image_object(tmp_path):
    from matplotlib import image as mpl_image

    grey = np.tile(np.linspace(0.0, 1.0, 120), (100, 1))
    path = tmp_path / "gradient.png"
    mpl_image.imsave(path, grey, cmap="gray", vmin=0, vmax=1)
    scan = simulate(SimulationConfig(object_kind="image", image=str(path), nphotons=None, **SMALL))
    assert scan.object.shape == (100, 120)
    amplitude, phase = np.abs(scan.object), np.angle(scan.object)
    assert amplitude.min() == pytest.approx(0.5, abs=1e-5) and amplitude.max() == pytest.approx(1.0, abs=1e-5)
    assert phase.min() == pytest.approx(-1.0, abs=1e-5) and phase.max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(amplitude, 0.5 + 0.5 * grey, atol=0.01)  # 8-bit PNG quantisation
    np.testing.assert_allclose(phase, -1 + 2 * grey, atol=0.02)


def test_image_array_roles_and_resize():
    grey = np.random.default_rng(2).uniform(size=(40, 50))
    amplitude_only = make_object("image", (40, 50), np.random.default_rng(0), image=grey, image_role="amplitude")
    np.testing.assert_allclose(np.abs(amplitude_only), 0.5 + 0.5 * (grey - grey.min()) / np.ptp(grey), atol=1e-6)
    np.testing.assert_allclose(np.angle(amplitude_only), 0.0, atol=1e-6)
    phase_only = make_object("image", (40, 50), np.random.default_rng(0), image=grey, image_role="phase")
    np.testing.assert_allclose(np.abs(phase_only), 1.0, atol=1e-6)
    resized = make_object("image", (80, 100), np.random.default_rng(0), image=grey)
    assert resized.shape == (80, 100)
    rgb = load_image(np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1))
    np.testing.assert_allclose(rgb, grey, atol=1e-12)


def test_complex_image_is_used_as_is():
    obj = (0.8 * np.exp(0.3j * np.ones((90, 90)))).astype(np.complex64)
    scan = simulate(SimulationConfig(object_kind="image", image=obj, nphotons=None, **SMALL))
    np.testing.assert_array_equal(scan.object, obj)


def test_bad_image_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="bad.png"):
        load_image(bad)
    with pytest.raises(ConfigError, match="2-D image"):
        load_image(np.zeros((2, 3, 5, 7)))


# ------------------------------------------------------------------------------------ probes
def test_disk_probe_shape_support_and_defocus():
    probe = make_probe("disk", 64, defocus=1.0)
    amplitude = np.abs(probe)
    yy, xx = np.mgrid[0:64, 0:64] - 32
    r = np.hypot(xx, yy)
    assert probe.shape == (64, 64) and probe.dtype == np.complex64
    assert amplitude[32, 32] == pytest.approx(1.0, abs=1e-6)
    assert amplitude[32, 48] == pytest.approx(0.5, abs=1e-3)  # 50 % edge at radius N/4 = 16
    assert amplitude[r >= 24].max() < 1e-3  # support well inside N
    assert np.angle(probe[32, 48]) == pytest.approx(1.0, abs=1e-4)  # defocus phase at the radius
    # limited ringing: the far field decays by > 5 decades towards the edge of the detector
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe))) ** 2
    assert far[r >= 28].max() / far.max() < 1e-5


def test_gaussian_probe():
    probe = make_probe("gaussian", 32, radius=6.0, defocus=0.0)
    assert np.abs(probe[16, 16]) == pytest.approx(1.0)
    assert np.abs(probe[16, 22]) == pytest.approx(np.exp(-1.0), rel=1e-5)
    np.testing.assert_allclose(np.angle(probe), 0.0, atol=1e-7)


def test_given_probe_array_is_used_and_scaled():
    given = make_probe("gaussian", N, radius=7.0) * 3.0
    scan = simulate(SimulationConfig(probe_kind="array", probe_array=given, nphotons=None, **SMALL))
    np.testing.assert_allclose(scan.probe, given, rtol=1e-6)
    noisy = simulate(SimulationConfig(probe_kind="array", probe_array=given, nphotons=1e5, **SMALL))
    ratio = noisy.probe / given
    np.testing.assert_allclose(ratio, ratio[N // 2, N // 2], rtol=1e-5)  # same shape, one real scale
    with pytest.raises(ConfigError, match="probe_array"):
        SimulationConfig(probe_kind="array", probe_array=np.ones((8, 8)), N=N).validate()


# ------------------------------------------------------------------------------------- scans
@pytest.mark.parametrize("kind", SCAN_KINDS)
def test_scan_patches_inside_object(kind):
    scan = simulate(SimulationConfig(scan_kind=kind, object_kind="grf", nphotons=None, seed=1,
                                     N=N, n_images=50, step=4.0, margin=2))
    height, width = scan.object.shape
    x, y = scan.x, scan.y
    assert len(x) == 50
    assert len(np.unique(np.round(scan.positions, 6), axis=0)) == 50
    # patches and their interpolation neighbours (up to row y + N/2) lie inside, with 2 pixels of margin
    assert x.min() - N / 2 >= 2 and y.min() - N / 2 >= 2
    assert x.max() + N / 2 <= width - 1 - 2 and y.max() + N / 2 <= height - 1 - 2
    # the automatic object is the smallest that holds the scan (+ rounding)
    assert width - (x.max() - x.min()) - N - 1 - 4 < 1.0 + 1e-9


@pytest.mark.parametrize("kind", SCAN_KINDS)
def test_scan_extent_matches_step(kind):
    positions = scan_positions(kind, 400, 6.0, np.random.default_rng(0), jitter=0.25)
    span = np.ptp(positions, axis=0)
    # raster-like scans: 20 x 20 grid of pitch 6 (jitter adds up to 3 px); fermat: a disk holding one
    # position per 36 px^2, i.e. a radius 6 * sqrt(400 / pi) = 67.7 px
    expected = 2 * 6.0 * np.sqrt(400 / np.pi) if kind == "fermat" else 19 * 6.0
    np.testing.assert_allclose(span, expected, rtol=0.03)


def test_raster_positions_are_an_exact_grid():
    relative = scan_positions("raster", 12, 5.0, np.random.default_rng(0))
    positions, shape = place_scan(relative, N, margin=1)
    np.testing.assert_array_equal(np.diff(np.unique(positions[:, 0])), 5.0)
    np.testing.assert_array_equal(positions, np.round(positions))
    assert shape == (int(np.ptp(positions[:, 1])) + N + 3, int(np.ptp(positions[:, 0])) + N + 3)


def test_given_object_size_centres_scan_and_rejects_too_small():
    relative = scan_positions("raster", 9, 10.0, np.random.default_rng(0))
    positions, shape = place_scan(relative, N, (200, 150), margin=2)
    assert shape == (200, 150)
    centre = (positions.min(axis=0) + positions.max(axis=0)) / 2
    np.testing.assert_allclose(centre, [(150 - 1) / 2, (200 - 1) / 2], atol=0.5)
    with pytest.raises(ConfigError, match="object_size"):
        place_scan(relative, N, (40, 40), margin=2)


def test_invalid_config_names_the_field():
    with pytest.raises(ConfigError, match="scan_kind"):
        SimulationConfig(scan_kind="spiral").validate()
    with pytest.raises(ConfigError, match="object_kind"):
        SimulationConfig(object_kind="siemens").validate()
    with pytest.raises(ConfigError, match="nphotons"):
        SimulationConfig(nphotons=-1.0).validate()
    with pytest.raises(ConfigError, match="SimulationConfig.N"):
        SimulationConfig(N=33).validate()
    with pytest.raises(ConfigError, match="image"):
        SimulationConfig(object_kind="image").validate()


# ------------------------------------------------------------------------------ forward model
def test_noise_free_amplitudes_match_numpy_integer_positions():
    scan = simulate(SimulationConfig(scan_kind="raster", object_kind="lines", nphotons=None, **SMALL))
    assert np.array_equal(scan.positions, np.round(scan.positions))
    expected = numpy_amplitudes(scan.object, scan.probe, scan.positions)
    assert relative_error(scan.amplitudes, expected) < 1e-5


def test_noise_free_amplitudes_match_numpy_bilinear_positions():
    scan = simulate(SimulationConfig(scan_kind="random", object_kind="grf", probe_kind="gaussian",
                                     nphotons=None, **SMALL))
    assert np.any(scan.positions % 1 > 0.1)
    expected = numpy_amplitudes(scan.object, scan.probe, scan.positions)
    assert relative_error(scan.amplitudes, expected) < 1e-5


# ------------------------------------------------------------------------------------- noise
def test_poisson_counts_match_dose_and_scaled_probe():
    nphotons = 1e6
    scan = simulate(SimulationConfig(scan_kind="raster", nphotons=nphotons, seed=11, N=N, n_images=64, step=4.0))
    counts = scan.amplitudes.astype(np.float64) ** 2
    # counts are integers (up to float32 rounding of sqrt)
    assert np.all(np.abs(counts - np.round(counts)) <= 3e-7 * np.maximum(counts, 1.0))
    assert scan.counts_per_pattern.mean() == pytest.approx(nphotons, rel=0.01)
    # the stored probe is scaled so that expected counts are |F(probe * patch)|^2 exactly
    expected = numpy_amplitudes(scan.object, scan.probe, scan.positions) ** 2
    assert expected.sum(axis=(1, 2)).mean() == pytest.approx(nphotons, rel=1e-5)
    # Poisson statistics: standardised residuals have unit variance and zero mean
    bright = expected > 20
    residual = (np.round(counts[bright]) - expected[bright]) / np.sqrt(expected[bright])
    assert bright.sum() > 10_000
    assert abs(residual.mean()) < 0.03
    assert residual.std() == pytest.approx(1.0, abs=0.03)


def test_add_poisson_noise_scale_and_low_dose():
    clean = np.full((200, 4, 4), 0.5)
    noisy, scale = add_poisson_noise(clean, 1e4, np.random.default_rng(0))
    assert scale == pytest.approx(np.sqrt(1e4 / (16 * 0.25)))
    assert noisy.dtype == np.float32
    counts = noisy.astype(np.float64) ** 2
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1e4, rel=0.01)
    assert counts.var() == pytest.approx(1e4 / 16, rel=0.1)  # Poisson: variance = mean = 625
    with pytest.raises(ValueError, match="non-zero"):
        add_poisson_noise(np.zeros((2, 4, 4)), 1e4, np.random.default_rng(0))
