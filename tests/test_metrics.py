"""Tests of ptycho.metrics: alignment, scores, FRC and the comparison figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ptycho import metrics
from ptycho.stitching import stitch_patches

SCORE_KEYS = [f"{c}_{m}" for c in ("amp", "phase") for m in ("ssim", "psnr", "psnr255", "mae", "frc50", "frc17")]
CROP = (slice(32, 160), slice(32, 160))  # a 128 x 128 window of the 192 x 192 field, away from its edges


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float = 2.5) -> np.ndarray:
    """Smooth, periodic, zero-mean unit-variance random field (gaussian_filter in wrap mode)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def fourier_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Move the content of a periodic complex image by +shift (dy, dx) px, exactly (band-limited)."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift))


@pytest.fixture(scope="module")
def field() -> np.ndarray:
    """A 192 x 192 complex object: amplitude 0.5..1, phase -1..1 rad, features a few pixels wide."""
    rng = np.random.default_rng(1234)
    amplitude = 0.75 + 0.25 * np.tanh(smooth_field(rng, (192, 192)))
    phase = np.tanh(smooth_field(rng, (192, 192)))
    return amplitude * np.exp(1j * phase)


@pytest.fixture(scope="module")
def truth(field: np.ndarray) -> np.ndarray:
    return field[CROP]


def test_identical_images_score_perfectly(truth: np.ndarray) -> None:
    result = metrics.evaluate(truth, truth)
    assert set(SCORE_KEYS) <= set(result)
    for c in ("amp", "phase"):
        assert result[f"{c}_ssim"] == pytest.approx(1.0, abs=1e-9)
        assert result[f"{c}_psnr"] == metrics.PSNR_CAP_DB
        assert result[f"{c}_psnr255"] == metrics.PSNR_CAP_DB
        assert result[f"{c}_mae"] == pytest.approx(0.0, abs=1e-12)
        assert result[f"{c}_frc50"] == 1.0
        assert result[f"{c}_frc17"] == 1.0
    assert (result["shift_y"], result["shift_x"]) == (0.0, 0.0)
    assert all(type(v) is float for v in result.values())
    json.dumps(result, allow_nan=False)  # finite plain floats: standard JSON


@pytest.mark.parametrize("periodic", [True, False], ids=["periodic", "cropped"])
def test_subpixel_shift_is_recovered(field: np.ndarray, truth: np.ndarray, periodic: bool) -> None:
    shift = (2.3, -1.7)
    if periodic:  # the whole test image shifted with wrap-around
        recon = fourier_shift(truth, shift)
    else:  # the same window cut from a shifted larger object: new content enters at the edges
        recon = fourier_shift(field, shift)[CROP]
    aligned, cropped, info = metrics.align(recon, truth)
    np.testing.assert_allclose(info["shift"], (-2.3, 1.7), atol=0.05)
    edge = metrics.SPLINE_EDGE_PX
    assert cropped.shape == (128 - 2 * (3 + edge), 128 - 2 * (2 + edge))  # ceil(|shift|) + edge per side
    assert aligned.shape == cropped.shape
    result = metrics.evaluate(recon, truth)
    assert (result["shift_y"], result["shift_x"]) == pytest.approx((-2.3, 1.7), abs=0.05)
    for c in ("amp", "phase"):  # left: cubic-spline interpolation error, at frequencies with almost no signal
        assert result[f"{c}_ssim"] > 0.998
        assert result[f"{c}_psnr"] > 40.0
        assert result[f"{c}_frc50"] > 0.8
        assert result[f"{c}_frc17"] > 0.95
    unregistered = metrics.evaluate(recon, truth, register=False)
    assert unregistered["amp_ssim"] < 0.8
    assert unregistered["phase_psnr"] < result["phase_psnr"] - 20.0


def test_constant_phase_offset_is_removed(truth: np.ndarray) -> None:
    recon = truth * np.exp(0.7j)
    _, _, info = metrics.align(recon, truth, register=False)
    assert info["phase_offset"] == pytest.approx(0.7, abs=1e-9)
    result = metrics.evaluate(recon, truth)
    assert result["phase_offset"] == pytest.approx(0.7, abs=1e-9)
    assert result["phase_mae"] < 1e-9
    assert result["phase_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_phase_offset_near_pi_does_not_wrap(truth: np.ndarray) -> None:
    """Phases near +-pi: the recon's phase is unwrapped relative to the truth's, so no 2*pi jumps."""
    rolled = truth * np.exp(3.0j)  # phase 2 ... 4 rad wraps through pi
    jitter = np.random.default_rng(9).normal(0.0, 0.05, truth.shape)  # rad
    result = metrics.evaluate(rolled * np.exp(1j * (jitter - 0.5)), rolled, register=False)
    assert result["phase_mae"] == pytest.approx(np.mean(np.abs(jitter - jitter.mean())), rel=0.02)


def test_phase_plane_removed_only_when_asked(truth: np.ndarray) -> None:
    rows, cols = np.indices(truth.shape)
    recon = truth * np.exp(1j * (0.05 * rows - 0.03 * cols + 0.4))
    aligned, cropped, info = metrics.align(recon, truth, register=False, remove_phase_plane=True)
    np.testing.assert_allclose(info["phase_plane"], (0.05, -0.03), atol=1e-9)
    np.testing.assert_allclose(aligned, cropped, atol=1e-9)
    with_plane = metrics.evaluate(recon, truth, remove_phase_plane=True)
    without = metrics.evaluate(recon, truth, register=False)
    assert with_plane["phase_ssim"] > 0.9999
    assert with_plane["phase_mae"] < 1e-6
    assert without["phase_mae"] > 0.5
    assert without["phase_ssim"] < 0.8


def test_amplitude_scale_is_matched(truth: np.ndarray) -> None:
    result = metrics.evaluate(2.5 * truth, truth)
    assert result["amplitude_scale"] == pytest.approx(0.4, rel=1e-9)
    assert result["amp_psnr"] == metrics.PSNR_CAP_DB
    assert result["amp_mae"] < 1e-9


def test_noise_and_blur_lower_the_scores(truth: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    noise = 0.03 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    blurred = ndimage.gaussian_filter(truth.real, 2.0) + 1j * ndimage.gaussian_filter(truth.imag, 2.0)
    sharp = metrics.evaluate(truth + noise, truth, register=False)
    soft = metrics.evaluate(blurred + noise, truth, register=False)
    for c in ("amp", "phase"):
        assert 0.1 < sharp[f"{c}_frc50"] <= 1.0
        assert soft[f"{c}_frc50"] < sharp[f"{c}_frc50"] - 0.1
        assert soft[f"{c}_frc17"] < sharp[f"{c}_frc17"]
        assert soft[f"{c}_frc50"] <= soft[f"{c}_frc17"]
        assert soft[f"{c}_ssim"] < sharp[f"{c}_ssim"] < 1.0
        assert soft[f"{c}_psnr"] < sharp[f"{c}_psnr"] < metrics.PSNR_CAP_DB


def test_psnr_values_against_hand_computation(truth: np.ndarray) -> None:
    """Amplitude error of exactly 0.01 everywhere (scale matching is exact for a +-0.01 checkerboard)."""
    sign = np.where(np.add.outer(np.arange(128), np.arange(128)) % 2 == 0, 1.0, -1.0)
    amp = np.abs(truth)
    recon = (amp + 0.01 * sign) * np.exp(1j * np.angle(truth))
    result = metrics.evaluate(recon, truth, register=False)
    scale = result["amplitude_scale"]
    expected_mse = np.mean((scale * (amp + 0.01 * sign) - amp) ** 2)
    peak = np.ptp(amp)
    assert result["amp_psnr"] == pytest.approx(10 * np.log10(peak**2 / expected_mse), rel=1e-9)
    # the same number but for clipping to 0..255, which can only remove error where the truth is extreme
    assert result["amp_psnr"] < result["amp_psnr255"] < result["amp_psnr"] + 0.2
    assert result["amp_mae"] == pytest.approx(np.mean(np.abs(scale * (amp + 0.01 * sign) - amp)), rel=1e-9)


def test_psnr255_clips_values_outside_the_truth_range(truth: np.ndarray) -> None:
    recon = truth.copy()
    recon[:4] *= 3.0  # far above the truth's range: saturates at 255
    result = metrics.evaluate(recon, truth, register=False)
    assert result["amp_psnr255"] > result["amp_psnr"] + 1.0


def test_frc_curve_and_crossings() -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((64, 48))
    freqs, curve = metrics.frc(a, a)
    assert freqs.shape == curve.shape == (24,)
    assert freqs[0] == pytest.approx(1 / 24) and freqs[-1] == 1.0
    np.testing.assert_allclose(curve, 1.0)
    _, unrelated = metrics.frc(a, rng.standard_normal((64, 48)))
    assert np.abs(unrelated).mean() < 0.15
    f = np.array([0.25, 0.5, 0.75, 1.0])
    falling = np.array([0.9, 0.7, 0.3, 0.1])
    assert metrics.frc_crossing(f, falling, 0.5) == pytest.approx(0.625)
    assert metrics.frc_crossing(f, falling, 1 / 7) == pytest.approx(0.75 + 0.25 * (0.3 - 1 / 7) / 0.2)
    assert metrics.frc_crossing(f, np.array([0.9, 0.8, 0.7, 0.6]), 0.5) == 1.0
    assert metrics.frc_crossing(f, np.array([0.4, 0.8, 0.2, 0.1]), 0.5) == 0.25


def test_scanned_region_bounds() -> None:
    positions = np.array([[40.0, 30.0], [80.0, 50.0]])  # (x, y)
    assert metrics.scanned_region(positions, 32, (100, 120)) == (slice(22, 58), slice(32, 88))
    # whole patches: rows y - N/2 ... y + N/2 - 1 of the first and last patch
    assert metrics.scanned_region(positions, 32, (100, 120), margin_fraction=0.0) == (slice(14, 66), slice(24, 96))
    # clipped to the object; fractional bounds shrink inwards
    edge = np.array([[2.0, 95.5], [117.0, 60.5]])
    assert metrics.scanned_region(edge, 32, (100, 120)) == (slice(53, 100), slice(0, 120))
    inner = np.array([[40.0, 30.5], [80.5, 50.5]])  # box y 22.5 ... 58.5, x 32 ... 88.5
    assert metrics.scanned_region(inner, 32, (100, 120)) == (slice(23, 58), slice(32, 88))
    with pytest.raises(ValueError, match="positions"):
        metrics.scanned_region(np.zeros((3, 3)), 32, (100, 120))
    with pytest.raises(ValueError, match="margin_fraction"):
        metrics.scanned_region(positions, 32, (100, 120), margin_fraction=0.5)


def test_covered_region_drops_what_no_central_patch_part_reaches() -> None:
    xs, ys = np.meshgrid(np.arange(10) * 3.0 + 20, np.arange(10) * 3.0 + 20)
    raster = np.stack([xs.ravel(), ys.ravel()], axis=1)
    # a full raster is covered everywhere: the box itself
    assert metrics.covered_region(raster, 32, (100, 100)) == metrics.scanned_region(raster, 32, (100, 100))
    # a partial last row (4 of 10 positions at y = 47): the box keeps its rows 52..54, which only
    # the left part of the scan reaches; covered_region stops above them (y = 44 + 8)
    partial = raster[:94]
    assert metrics.scanned_region(partial, 32, (100, 100)) == (slice(12, 55), slice(12, 55))
    rows, cols = metrics.covered_region(partial, 32, (100, 100))
    assert (rows, cols) == (slice(12, 52), slice(12, 55))
    stitched = stitch_patches(np.ones((94, 32, 32), np.complex64), partial, shape=(100, 100))
    assert stitched.covered[rows, cols].all() and not stitched.covered[12:55, 12:55].all()
    # two distant patches: only one central part survives
    assert metrics.covered_region(np.array([[40.0, 30.0], [80.0, 50.0]]), 32, (100, 120)) == (slice(42, 58),
                                                                                                slice(72, 88))


def test_region_restricts_the_score(truth: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    region = (slice(20, 100), slice(10, 110))
    recon = rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape)
    recon[region] = truth[region]  # garbage outside the scanned region must not count
    result = metrics.evaluate(recon, truth, region=region)
    assert result["amp_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert result["phase_psnr"] == metrics.PSNR_CAP_DB
    assert metrics.evaluate(recon, truth)["amp_ssim"] < 0.5


def test_constant_truth_amplitude_gives_finite_scores(truth: np.ndarray) -> None:
    """A pure-phase object has a flat amplitude: the PSNR peak falls back to a window of width 1."""
    pure_phase = np.exp(1j * np.angle(truth))
    rng = np.random.default_rng(11)
    recon = pure_phase * (1.0 + 0.01 * rng.standard_normal(truth.shape))
    result = metrics.evaluate(recon, pure_phase, register=False)
    assert all(np.isfinite(v) for v in result.values())
    assert result["amp_psnr"] == pytest.approx(40.0, abs=0.3)  # RMSE 0.01 against peak 1
    assert result["phase_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_bad_input_raises_clear_errors(truth: np.ndarray) -> None:
    with pytest.raises(ValueError, match="recon: expected the truth's shape"):
        metrics.evaluate(truth[:-1], truth)
    with pytest.raises(ValueError, match="truth: expected finite"):
        metrics.evaluate(truth, np.where(np.arange(128) == 3, np.nan, truth))
    with pytest.raises(ValueError, match="recon: expected a 2-D image"):
        metrics.evaluate(truth[None], truth[None])
    with pytest.raises(ValueError, match="all zeros"):
        metrics.evaluate(np.zeros_like(truth), truth, register=False)


def test_comparison_figure_is_written_atomically(tmp_path, truth: np.ndarray) -> None:
    recon = fourier_shift(truth, (1.2, 0.4)) * np.exp(0.3j)
    aligned, cropped, _ = metrics.align(recon, truth)
    result = metrics.evaluate(recon, truth)
    path = metrics.comparison_figure(aligned, cropped, tmp_path / "comparison.png", result)
    assert path == tmp_path / "comparison.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.png"]  # no temporary file left
