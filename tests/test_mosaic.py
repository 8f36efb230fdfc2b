"""Mosaics of randomly turned pieces of a reconstruction (`ptycho.mosaic`)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.mosaic import MIN_PIECE_PX, mosaic_object, piece_side


def _stripes(shape=(70, 90)) -> np.ndarray:
    """Amplitude 0.5..1 varying along x only (stripes parallel to y), phase 0.3 rad."""
    x = np.arange(shape[1])
    amplitude = 0.75 + 0.25 * np.cos(2 * np.pi * x / 10.0)
    return (np.broadcast_to(amplitude, shape) * np.exp(0.3j)).astype(np.complex64)


def test_piece_side_fits_the_source_at_every_angle():
    assert piece_side((70, 90)) == 2 * int(68 / np.sqrt(2) / 2) == 48
    assert piece_side((90, 70)) == piece_side((70, 90))


def test_mosaic_turns_and_mirrors_pieces_of_the_source():
    source = _stripes()
    mosaic = mosaic_object(source, (120, 150), np.random.default_rng(0))
    assert mosaic.shape == (120, 150) and mosaic.dtype == np.complex64
    amplitude = np.abs(mosaic)
    # values come from the source: interpolation and 2 px blends stay within its range
    assert amplitude.max() <= 1.0 + 1e-5 and amplitude.min() >= 0.5 - 0.05
    np.testing.assert_allclose(np.angle(mosaic), 0.3, atol=1e-5)
    # the source varies along x only; the turned pieces vary along y as much as along x
    gy, gx = np.gradient(amplitude)
    strong = np.hypot(gx, gy) > 0.02
    assert np.abs(np.gradient(np.abs(source))[0]).max() < 1e-6
    fraction_along_y = np.mean(np.abs(gy[strong]) > np.abs(gx[strong]))
    assert 0.3 < fraction_along_y < 0.7
    np.testing.assert_array_equal(mosaic, mosaic_object(source, (120, 150), np.random.default_rng(0)))
    assert not np.array_equal(mosaic, mosaic_object(source, (120, 150), np.random.default_rng(1)))


def test_a_source_too_small_or_not_complex_is_refused():
    small = np.ones((20, 60), np.complex64)  # a 16 px piece needs 25 px at 45 degrees
    assert piece_side(small.shape) < MIN_PIECE_PX
    with pytest.raises(ValueError, match=r"at least 25 pixels.*\(20, 60\)"):
        mosaic_object(small, (50, 50), np.random.default_rng(0))
    with pytest.raises(ValueError, match="complex"):
        mosaic_object(np.ones((60, 60)), (50, 50), np.random.default_rng(0))
