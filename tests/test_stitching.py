"""Tests of ptycho.stitching: patches back onto the object grid (docs/conventions.md geometry)."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from ptycho.stitching import (ILLUMINATION_FLOOR, Stitcher, canvas_covering, default_keep, illumination_weight,
                              stitch_patches)


def random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def cut_patches(obj: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Patches at integer positions: patch[i, j] = obj[y - n//2 + i, x - n//2 + j]."""
    c = n // 2
    return np.stack([obj[int(y) - c:int(y) - c + n, int(x) - c:int(x) - c + n] for x, y in positions])


@pytest.mark.parametrize("shape, count", [((60, 70), 40), ((700, 30), 400)])  # the tall one spans 3 row bands
def test_patches_cut_at_integer_positions_give_back_the_object_exactly(shape, count):
    rng = np.random.default_rng(0)
    obj = random_complex(rng, shape)
    n, keep = 16, 8
    positions = np.stack([rng.integers(8, shape[1] - 8, count), rng.integers(8, shape[0] - 8, count)],
                         axis=1).astype(float)
    result = stitch_patches(cut_patches(obj, positions, n), positions, shape=obj.shape, keep=keep)

    expected_cover = np.zeros(obj.shape, dtype=bool)
    for x, y in positions.astype(int):
        expected_cover[y - 4:y + 4, x - 4:x + 4] = True
    np.testing.assert_array_equal(result.covered, expected_cover)
    assert result.image.dtype == np.complex64 and result.origin == (0.0, 0.0)
    np.testing.assert_array_equal(result.image[expected_cover], obj[expected_cover])
    np.testing.assert_array_equal(result.image[~expected_cover], 0)


def test_single_patch_lands_on_the_right_pixels_of_a_grid_with_origin():
    keep = 4
    patch = (np.arange(64) + 1j * np.arange(64)[::-1]).reshape(8, 8).astype(np.complex64)
    # Kept patch rows/cols 2..5 are object rows 20 - 4 + 2.. = 18..21 and columns 10 - 4 + 2.. = 8..11;
    # with origin (x=3, y=15) those are canvas rows 3..6 and columns 5..8.
    result = stitch_patches(patch[None], np.array([[10.0, 20.0]]), shape=(20, 20), origin=(3.0, 15.0), keep=keep)
    expected = np.zeros((20, 20), dtype=np.complex64)
    expected[3:7, 5:9] = patch[2:6, 2:6]
    np.testing.assert_array_equal(result.image, expected)
    np.testing.assert_array_equal(result.weights, (expected != 0).astype(float))
    assert result.origin == (3.0, 15.0)


def test_full_patch_pixel_at_index_half_n_is_the_position():
    patch = np.zeros((8, 8), dtype=np.complex64)
    patch[4, 4] = 5.0
    result = stitch_patches(patch[None], np.array([[6.0, 9.0]]), shape=(16, 16), keep=8)
    assert result.image[9, 6] == 5.0
    assert np.count_nonzero(result.image) == 1


def test_splatting_is_the_adjoint_of_bilinear_sampling():
    rng = np.random.default_rng(1)
    n, keep = 12, 10
    patch = random_complex(rng, (n, n))
    x, y = 17.3, 11.65
    origin = (2.0, -1.0)
    canvas = rng.standard_normal((30, 32))
    result = stitch_patches(patch[None], np.array([[x, y]]), shape=canvas.shape, origin=origin, keep=keep)
    splat = result.image.astype(np.complex128) * result.weights  # undo the normalisation

    start = (n - keep) // 2
    i = np.arange(start, start + keep)
    rows = (y - n // 2 + i - origin[1])[:, None] + 0 * i[None, :]
    cols = (x - n // 2 + i - origin[0])[None, :] + 0 * i[:, None]
    sampled = map_coordinates(canvas, [rows, cols], order=1)  # independent bilinear sampler
    kept = patch[start:start + keep, start:start + keep].astype(np.complex128)
    np.testing.assert_allclose(np.sum(splat * canvas), np.sum(kept * sampled), rtol=1e-6)
    np.testing.assert_allclose(result.weights.sum(), keep * keep, rtol=1e-6)


def test_constant_patches_at_subpixel_positions_give_a_constant_canvas():
    rng = np.random.default_rng(2)
    value = np.complex64(2.0 - 3.0j)
    positions = rng.uniform(10, 40, size=(300, 2))
    patches = np.full((300, 16, 16), value)
    result = stitch_patches(patches, positions, shape=(50, 50), keep=12)
    assert result.covered[15:35, 15:35].all()
    np.testing.assert_allclose(result.image[result.covered], value, rtol=2e-6)
    assert not result.covered[:2].any() and not result.covered[:, -2:].any()


def test_grouped_input_equals_flattened_input():
    rng = np.random.default_rng(3)
    patches = random_complex(rng, (10, 4, 16, 16))
    positions = rng.uniform(10, 50, size=(10, 4, 2))
    grouped = stitch_patches(patches, positions, shape=(60, 60))
    flat = stitch_patches(patches.reshape(40, 16, 16), positions.reshape(40, 2), shape=(60, 60))
    np.testing.assert_array_equal(grouped.image, flat.image)
    np.testing.assert_array_equal(grouped.weights, flat.weights)


def test_chunk_size_and_streaming_do_not_change_the_result():
    rng = np.random.default_rng(4)
    patches = random_complex(rng, (50, 16, 16))
    positions = rng.uniform(-5, 65, size=(50, 2))  # some patches overhang or miss the canvas
    one_go = stitch_patches(patches, positions, shape=(60, 60), origin=(0.5, -2.0), chunk_size=1024)
    small = stitch_patches(patches, positions, shape=(60, 60), origin=(0.5, -2.0), chunk_size=3)
    np.testing.assert_allclose(small.image, one_go.image, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(small.weights, one_go.weights, rtol=1e-12, atol=1e-12)

    stitcher = Stitcher((60, 60), patch_size=16, origin=(0.5, -2.0), chunk_size=7)
    for part in np.array_split(np.arange(50), 4):
        stitcher.add(patches[part], positions[part])
    streamed = stitcher.result()
    np.testing.assert_allclose(streamed.image, one_go.image, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(streamed.weights, one_go.weights, rtol=1e-12, atol=1e-12)


def test_automatic_canvas_is_tight_and_overlays_the_object_grid():
    rng = np.random.default_rng(5)
    patches = random_complex(rng, (30, 16, 16))
    positions = rng.uniform(20, 80, size=(30, 2))
    auto = stitch_patches(patches, positions, keep=10)
    assert auto.origin == canvas_covering(positions, 16, 10)[1]
    assert auto.covered[0].any() and auto.covered[-1].any()
    assert auto.covered[:, 0].any() and auto.covered[:, -1].any()

    x0, y0 = int(auto.origin[0]), int(auto.origin[1])
    on_grid = stitch_patches(patches, positions, shape=(110, 110), keep=10)
    h, w = auto.image.shape
    np.testing.assert_allclose(on_grid.image[y0:y0 + h, x0:x0 + w], auto.image, rtol=1e-6, atol=1e-7)
    assert on_grid.weights.sum() == pytest.approx(auto.weights.sum())


def test_fill_value_marks_uncovered_pixels():
    patch = np.ones((1, 8, 8), dtype=np.complex64)
    result = stitch_patches(patch, np.array([[4.0, 4.0]]), shape=(12, 12), fill=np.nan)
    assert np.isnan(result.image[~result.covered]).all()
    assert result.covered.sum() == default_keep(8) ** 2


def test_weight_map_gives_each_pixel_the_weighted_mean_of_overlapping_patches():
    n, keep = 8, 8
    yy, xx = np.indices((n, n)) - n // 2
    weight = np.exp(-(xx ** 2 + yy ** 2) / 8.0)
    patches = np.stack([np.full((n, n), 1 + 1j), np.full((n, n), 3 - 1j)]).astype(np.complex64)
    positions = np.array([[10.0, 10.0], [13.0, 11.0]])  # overlap of 5 x 7 pixels, integer positions
    result = stitch_patches(patches, positions, shape=(24, 24), keep=keep, weight=weight)

    w1, w2 = np.zeros((24, 24)), np.zeros((24, 24))
    w1[6:14, 6:14] = weight
    w2[7:15, 9:17] = weight
    np.testing.assert_allclose(result.weights, w1 + w2, rtol=1e-6)
    covered = (w1 + w2) > 0
    expected = (w1 * (1 + 1j) + w2 * (3 - 1j))[covered] / (w1 + w2)[covered]
    np.testing.assert_allclose(result.image[covered], expected, rtol=1e-5)
    assert abs(result.image[10, 12] - 2.0) > 0.1  # off the midline the nearer patch dominates
    # a constant object is still given back exactly, whatever the weights
    same = stitch_patches(np.ones((2, n, n), np.complex64), positions, shape=(24, 24), keep=6, weight=weight)
    np.testing.assert_allclose(same.image[same.covered], 1.0, rtol=1e-6)


def test_illumination_weight_is_the_normalised_probe_intensity_with_a_floor():
    probe = np.zeros((8, 8), np.complex64)
    probe[3:5, 2:6] = 2j
    probe[4, 4] = 4.0
    weight = illumination_weight(probe)
    assert weight.dtype == np.float32 and weight.shape == (8, 8)
    assert weight[4, 4] == 1.0 and weight[3, 3] == pytest.approx(0.25)
    assert weight[0, 0] == pytest.approx(ILLUMINATION_FLOOR)
    with pytest.raises(ValueError, match=r"probe: expected a finite, non-zero \(N, N\) array"):
        illumination_weight(np.zeros((8, 8), np.complex64))


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.ones((6, 6)), r"weight: expected a float \(8, 8\) map \(the patch size\), got float64 \(6, 6\)"),
        (np.ones((8, 8), np.int64), r"weight: expected a float \(8, 8\) map"),
        (-np.ones((8, 8)), r"weight: expected finite, non-negative values"),
    ],
)
def test_invalid_weight_maps_raise_clear_errors(weight, message):
    with pytest.raises(ValueError, match=message):
        stitch_patches(np.ones((2, 8, 8), np.complex64), np.zeros((2, 2)), shape=(10, 10), weight=weight)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keep=0), r"keep: expected an integer in 1\.\.8"),
        (dict(keep=9), r"keep: expected an integer in 1\.\.8"),
        (dict(shape=(10, 0)), r"shape: expected two positive integers"),
        (dict(shape=(10, 10), chunk_size=0), r"chunk_size: expected a positive integer"),
        (dict(origin=(1.0, 2.0)), r"origin: needs a target shape"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stitch_patches(np.ones((2, 8, 8), np.complex64), np.zeros((2, 2)), **kwargs)


@pytest.mark.parametrize(
    "patches, positions, message",
    [
        (np.ones((2, 8, 8)), np.zeros((3, 2)), r"positions: expected shape \(2, 2\)"),
        (np.ones((2, 8, 6)), np.zeros((2, 2)), r"patches: expected shape \(\.\.\., 6, 6\)"),
        (np.ones((2, 8, 8)), np.full((2, 2), np.inf), r"positions: expected finite values"),
        (np.ones(8), np.zeros((1, 2)), r"patches: expected shape \(n, N, N\)"),
    ],
)
def test_invalid_inputs_raise_clear_errors(patches, positions, message):
    with pytest.raises(ValueError, match=message):
        stitch_patches(patches, positions, shape=(10, 10))
