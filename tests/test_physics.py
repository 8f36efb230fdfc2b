"""The differentiable forward model: translation, patches, propagation, losses (eager and XLA)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from ptycho import backend, physics


def _smooth_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    re = gaussian_filter(rng.normal(size=shape), sigma=(0,) * (len(shape) - 2) + (2, 2))
    im = gaussian_filter(rng.normal(size=shape), sigma=(0,) * (len(shape) - 2) + (2, 2))
    return (re + 1j * im).astype(np.complex64)


def _run(fn, *args, jit: bool):
    f = backend.compile_function(fn) if jit else fn
    return backend.to_numpy(f(*[ops.convert_to_tensor(a) for a in args]))


@pytest.mark.parametrize("jit", [False, True])
def test_integer_translation_equals_roll_away_from_border(jit):
    rng = np.random.default_rng(0)
    images = physics.complex_to_pair(_smooth_complex(rng, (3, 32, 32)))
    shifts = np.array([[2, -3], [0, 5], [-4, 1]], dtype=np.float32)
    out = _run(physics.translate, images, shifts, jit=jit)
    for b, (dx, dy) in enumerate(shifts.astype(int)):
        rolled = np.roll(images[b], shift=(dy, dx), axis=(0, 1))
        np.testing.assert_allclose(out[b, 6:-6, 6:-6], rolled[6:-6, 6:-6], atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_subpixel_translate_there_and_back_restores_interior(jit):
    rng = np.random.default_rng(1)
    images = physics.complex_to_pair(_smooth_complex(rng, (2, 48, 48)))
    shifts = np.array([[0.37, -1.62], [2.5, 0.25]], dtype=np.float32)
    there = _run(physics.translate, images, shifts, jit=jit)
    back = _run(physics.translate, there, -shifts, jit=jit)
    interior = (slice(8, -8), slice(8, -8))
    err = np.abs(back[0][interior] - images[0][interior]).max() / np.abs(images[0][interior]).max()
    assert err < 0.1  # bilinear twice smooths a little; a sign error would give ~1
    # The Fourier translation is exact for band-limited content.
    fthere = _run(physics.fourier_translate, images, shifts, jit=jit)
    fback = _run(physics.fourier_translate, fthere, -shifts, jit=jit)
    np.testing.assert_allclose(fback, images, atol=1e-5)


def test_translation_sign_moves_content_by_plus_shift():
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 5, 7, 0] = 1.0
    out = backend.to_numpy(physics.translate(ops.convert_to_tensor(image), ops.convert_to_tensor(np.array([[3.0, 2.0]], np.float32))))
    assert out[0, 7, 10, 0] == pytest.approx(1.0)  # row + dy, col + dx


@pytest.mark.parametrize("interpolation", ["bilinear", "fourier"])
def test_extract_patches_grouped_broadcasting(interpolation):
    """Gridsize 2: a group's C patches against their C positions, shapes and values."""
    rng = np.random.default_rng(2)
    canvas = physics.complex_to_pair(_smooth_complex(rng, (2, 64, 64)))
    positions = np.array([[[20, 22], [30, 22], [20, 31], [33, 35]],
                          [[25, 25], [26, 40], [40, 26], [39, 39]]], dtype=np.float32)
    patches = _run(lambda c, p: physics.extract_patches(c, p, 16, interpolation), canvas, positions, jit=True)
    assert patches.shape == (2, 4, 16, 16, 2)
    for b in range(2):
        for c in range(4):
            x, y = positions[b, c].astype(int)
            np.testing.assert_allclose(patches[b, c], canvas[b, y - 8:y + 8, x - 8:x + 8], atol=1e-5)


def test_merge_then_extract_returns_patches_in_covered_region():
    rng = np.random.default_rng(3)
    obj = physics.complex_to_pair(_smooth_complex(rng, (1, 40, 40)))
    positions = np.array([[[18.0, 18.0], [22.5, 18.0], [18.0, 21.25], [22.5, 21.25]]], np.float32)
    patches = _run(lambda c, p: physics.extract_patches(c, p, 16), obj, positions, jit=False)
    merged = _run(lambda q, p: physics.merge_patches(q, p, (40, 40)), patches, positions, jit=True)
    again = _run(lambda c, p: physics.extract_patches(c, p, 16), merged, positions, jit=False)
    # interior of each patch (away from the group's outer border) agrees
    err = np.abs(again[..., 4:-4, 4:-4, :] - patches[..., 4:-4, 4:-4, :]).max()
    assert err < 0.05 * np.abs(patches).max()
    # the merged canvas equals the object where all patches overlap (integer-aligned pixels)
    np.testing.assert_allclose(merged[0, 16:22, 18:22], obj[0, 16:22, 18:22], atol=0.05 * np.abs(obj).max())


def test_weighted_merge_keeps_predicted_regions_and_fills_borders_from_neighbours():
    """Each patch holds the object in its central 8 x 8 solution region and junk (zeros) outside:
    a plain average dims the object where a neighbour's border overlaps it; weighting the border by
    0.01 keeps the object (and a border pixel that no solution region covers keeps its own value)."""
    value = np.array([0.8, -0.3], np.float32)
    patches = np.zeros((1, 2, 16, 16, 2), np.float32)
    patches[:, :, 4:12, 4:12] = value
    positions = np.array([[[16.0, 16.0], [20.0, 16.0]]], np.float32)
    weight = physics.solution_region_weight(16, 8, 0.01)
    assert weight[8, 8] == 1.0 and weight[0, 0] == np.float32(0.01) and (weight == 1.0).sum() == 64
    plain = _run(lambda q, p: physics.merge_patches(q, p, (32, 32)), patches, positions, jit=True)[0]
    weighted = _run(lambda q, p: physics.merge_patches(q, p, (32, 32), weight), patches, positions, jit=True)[0]
    # canvas column 12..15: inside patch 0's solution region (cols 12..19) and patch 1's too (16..23)
    # from 16; columns 12..15 lie in patch 1's border
    np.testing.assert_allclose(plain[16, 13], value / 2, atol=1e-6)
    np.testing.assert_allclose(weighted[16, 13], value / 1.01, atol=1e-6)
    np.testing.assert_allclose(weighted[16, 18], value, atol=1e-6)
    np.testing.assert_allclose(weighted[16, 9], 0.0, atol=1e-6)  # only borders: their mean (0)


def test_far_field_is_orthonormal_and_centred():
    rng = np.random.default_rng(4)
    wave = _smooth_complex(rng, (3, 32, 32))
    intensity = backend.to_numpy(physics.far_field_intensity(ops.convert_to_tensor(physics.complex_to_pair(wave))))
    reference = np.abs(np.fft.fftshift(np.fft.fft2(wave, norm="ortho"), axes=(-2, -1))) ** 2
    np.testing.assert_allclose(intensity, reference, rtol=1e-4, atol=1e-6)
    # Parseval: energy is conserved
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)), (np.abs(wave) ** 2).sum(axis=(1, 2)), rtol=1e-5)
    # a flat wave puts all its energy at the centre pixel N//2
    flat = backend.to_numpy(physics.far_field_intensity(ops.ones((1, 32, 32, 2)) * ops.convert_to_tensor(np.array([1.0, 0.0], np.float32))))
    assert np.unravel_index(np.argmax(flat[0]), (32, 32)) == (16, 16)


def test_noise_free_amplitudes_equal_forward_model_of_truth_patches():
    """Simulated amplitudes equal |F(probe * patch)| of the ground-truth patches (rel. error < 1e-5)."""
    rng = np.random.default_rng(5)
    obj = np.exp(1j * rng.uniform(-1, 1, (80, 80))).astype(np.complex64)
    probe = _smooth_complex(rng, (32, 32))
    positions = np.array([[30, 30], [41, 37], [50, 45]], dtype=np.float64)
    amplitudes = physics.diffraction_amplitudes(obj, probe, positions)
    for i, (x, y) in enumerate(positions.astype(int)):
        patch = obj[y - 16:y + 16, x - 16:x + 16]
        reference = np.abs(np.fft.fftshift(np.fft.fft2(probe * patch, norm="ortho")))
        assert np.linalg.norm(amplitudes[i] - reference) / np.linalg.norm(reference) < 1e-5


def _epie_reference(patches, probe, measured, step_size):
    """NumPy: one ePIE update of each patch towards its measured far-field amplitude."""
    psi = probe * patches
    spectrum = np.fft.fftshift(np.fft.fft2(psi, norm="ortho"), axes=(-2, -1))
    corrected = np.fft.ifft2(np.fft.ifftshift(measured * np.exp(1j * np.angle(spectrum)), axes=(-2, -1)), norm="ortho")
    return patches + step_size * np.conj(probe) * (corrected - psi) / np.max(np.abs(probe)) ** 2


@pytest.mark.parametrize("jit", [False, True])
def test_data_consistency_step_is_epie_and_moves_towards_the_data(jit):
    """One step equals the NumPy ePIE update; the true patch is its fixed point; from a wrong patch the
    far-field misfit falls step by step."""
    rng = np.random.default_rng(8)
    probe = _smooth_complex(rng, (32, 32))
    truth = np.exp(0.3 * _smooth_complex(rng, (3, 32, 32)))
    measured = np.abs(np.fft.fftshift(np.fft.fft2(probe * truth, norm="ortho"), axes=(-2, -1))).astype(np.float32)
    start = (truth * np.exp(0.2 * _smooth_complex(rng, (3, 32, 32)))).astype(np.complex64)

    def step(patches, probe_pair, amplitude):
        return physics.data_consistency_step(patches, probe_pair, amplitude, 0.9)

    def run(patches):
        return physics.pair_to_complex(_run(step, physics.complex_to_pair(patches), physics.complex_to_pair(probe),
                                            measured, jit=jit))

    np.testing.assert_allclose(run(start), _epie_reference(start, probe, measured, 0.9), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run(truth), truth, atol=1e-4)

    def misfit(patches):
        spectrum = np.fft.fftshift(np.fft.fft2(probe * patches, norm="ortho"), axes=(-2, -1))
        return np.linalg.norm(np.abs(spectrum) - measured)

    errors = [misfit(start)]
    patches = start
    for _ in range(3):
        patches = run(patches)
        errors.append(misfit(patches))
    assert all(later < 0.9 * earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < 0.6 * errors[0]


def test_losses_have_their_minimum_at_the_data():
    rng = np.random.default_rng(6)
    measured = ops.convert_to_tensor(np.sqrt(rng.poisson(50.0, (4, 16, 16))).astype(np.float32))
    best = float(physics.poisson_nll(measured, measured))
    for factor in (0.8, 1.25):
        assert float(physics.poisson_nll(measured * factor, measured)) > best
    assert float(physics.amplitude_mae(measured, measured)) == 0.0
    assert best - float(physics.poisson_nll_offset(measured)) == pytest.approx(0.0, abs=1e-3)


def test_gaussian_smoothing_preserves_mean_and_reduces_variance():
    rng = np.random.default_rng(7)
    image = rng.normal(size=(1, 32, 32, 2)).astype(np.float32)
    out = backend.to_numpy(physics.gaussian_smooth(ops.convert_to_tensor(image), 1.5))
    assert out.shape == image.shape
    assert out[0, 8:-8, 8:-8].std() < 0.5 * image[0, 8:-8, 8:-8].std()
