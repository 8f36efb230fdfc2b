"""Synthetic training patterns through a scan's own probe (`ptycho.synthetic`) and training with them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image as mpl_image

from ptycho import physics
from ptycho.config.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.datasource import InMemorySource, mean_counts_per_pattern
from ptycho.metrics import covered_region
from ptycho.scan import ScanDataError
from ptycho.simulate import SimulationConfig, scan_positions, simulate
from ptycho.synthetic import CombinedSource, scan_step, synthetic_scan, with_synthetic_patterns
from ptycho.training import train
from ptychopinn_plugin.reconstruction_files import write_reconstruction


@pytest.fixture(scope="module")
def measured():
    return simulate(SimulationConfig(N=32, n_images=120, step=3.0, nphotons=1e6, seed=0))


@pytest.mark.parametrize("kind", ["raster", "jittered", "fermat"])
def test_scan_step_is_the_raster_pitch_of_the_scan_density(kind):
    positions = scan_positions(kind, 1600, 4.0, np.random.default_rng(0))
    assert scan_step(positions) == pytest.approx(4.0, rel=0.04)
    line = np.stack([np.arange(10) * 2.5, np.zeros(10)], axis=1)  # no area: nearest-neighbour distance
    assert scan_step(line) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="step is 0"):
        scan_step(np.zeros((5, 2)))


def test_synthetic_patterns_follow_the_probe_counts_and_step(measured):
    probe = measured.probe * 7.0  # any scale: the counts are set by mean_counts
    scan = synthetic_scan(probe, 400, "grf", step=2.5, mean_counts=2e5, seed=3)
    assert scan.amplitudes.shape == (400, 32, 32) and scan.object is not None
    assert scan.counts_per_pattern.mean() == pytest.approx(2e5, rel=0.01)
    scale = np.abs(scan.probe).max() / np.abs(probe).max()
    np.testing.assert_allclose(scan.probe, probe * scale, rtol=1e-4, atol=1e-6 * np.abs(scan.probe).max())
    assert scan_step(scan.positions) == pytest.approx(2.5, rel=0.08)
    expected = physics.diffraction_amplitudes(scan.object, scan.probe, scan.positions) ** 2
    counts = scan.amplitudes.astype(np.float64) ** 2
    assert counts.sum() / expected.sum() == pytest.approx(1.0, rel=1e-3)  # Poisson counts of this physics
    bright = expected > 20.0  # where Poisson noise is nearly Gaussian: unit-variance residuals
    residual = (counts[bright] - expected[bright]) / np.sqrt(expected[bright])
    assert abs(residual.mean()) < 0.05 and residual.std() == pytest.approx(1.0, abs=0.05)
    again = synthetic_scan(probe, 400, "grf", step=2.5, mean_counts=2e5, seed=3)
    np.testing.assert_array_equal(again.amplitudes, scan.amplitudes)
    other = synthetic_scan(probe, 400, "grf", step=2.5, mean_counts=2e5, seed=4)
    assert not np.array_equal(other.object, scan.object)


@pytest.mark.parametrize("seed", [0, 3])
def test_synthetic_object_is_not_the_object_that_simulate_makes_with_the_same_seed(measured, seed):
    """A training seed s must not regenerate simulate(seed=s)'s object: a benchmark that simulates its
    scan and trains with the same seed would otherwise see its held-out strokes in the synthetic ones."""
    scan = synthetic_scan(measured.probe, 400, "lines", step=3.0, mean_counts=1e6, seed=seed)
    same_seed_object = simulate(SimulationConfig(
        object_kind="lines", N=measured.probe.shape[-1], n_images=400, step=3.0, probe_kind="array",
        probe_array=measured.probe, nphotons=1e6, seed=seed, object_size=scan.object.shape)).object
    correlation = np.corrcoef(np.abs(scan.object).ravel(), np.abs(same_seed_object).ravel())[0, 1]
    assert abs(correlation) < 0.15  # independent 'lines' objects: 0.02 +- 0.03; the same stream: 1.0
    again = synthetic_scan(measured.probe, 400, "lines", step=3.0, mean_counts=1e6, seed=seed)
    np.testing.assert_array_equal(again.object, scan.object)  # still deterministic


def test_a_png_image_is_the_synthetic_object(tmp_path, measured):
    image = np.zeros((40, 40))
    image[:, 20:] = 1.0  # dark left half, bright right half
    path = tmp_path / "sample.png"
    mpl_image.imsave(path, image, cmap="gray")
    scan = synthetic_scan(measured.probe, 100, str(path), step=3.0, mean_counts=1e5, seed=0)
    amplitude = np.abs(scan.object)
    width = amplitude.shape[1]
    assert amplitude.shape[0] >= 32 + 9 * 3 and width >= 32 + 9 * 3  # holds the 10 x 10 scan
    assert amplitude[:, : width // 3].mean() == pytest.approx(0.5, abs=0.02)
    assert amplitude[:, -width // 3:].mean() == pytest.approx(1.0, abs=0.02)


def test_a_reconstruction_npz_is_cut_into_a_mosaic_of_its_covered_region(tmp_path, measured):
    region = covered_region(measured.positions, measured.N, measured.object.shape)
    reconstruction = np.full(measured.object.shape, 0.1, np.complex64)  # outside the region: amplitude 0.1
    reconstruction[region] = measured.object[region]
    path = tmp_path / "recon.npz"
    write_reconstruction(path, measured, reconstruction, np.ones(reconstruction.shape))  # as infer writes it
    scan = synthetic_scan(measured.probe, 100, str(path), step=3.0, mean_counts=1e5, seed=0)
    inside = np.abs(measured.object[region])
    amplitude = np.abs(scan.object)
    assert amplitude.shape[0] >= 32 + 9 * 3 and amplitude.shape[1] >= 32 + 9 * 3
    assert amplitude.min() > inside.min() - 0.05 and amplitude.max() < inside.max() + 1e-5  # never the 0.1 outside
    assert abs(amplitude.mean() - inside.mean()) < 0.05
    assert (scan.amplitudes**2).sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=0.02)
    again = synthetic_scan(measured.probe, 100, str(path), step=3.0, mean_counts=1e5, seed=0)
    np.testing.assert_array_equal(again.object, scan.object)
    np.savez(tmp_path / "no_object.npz", weights=np.ones(3))
    with pytest.raises(ScanDataError, match=r"no_object.npz: 'object'"):
        synthetic_scan(measured.probe, 100, str(tmp_path / "no_object.npz"), step=3.0, mean_counts=1e5, seed=0)
    tiny = measured.subset(np.arange(4))
    write_reconstruction(tmp_path / "tiny.npz", tiny, reconstruction, np.ones(reconstruction.shape))
    with pytest.raises(ValueError, match=r"tiny.npz: covered region: mosaic source: expected at least"):
        synthetic_scan(measured.probe, 100, str(tmp_path / "tiny.npz"), step=3.0, mean_counts=1e5, seed=0)


def test_combined_source_keeps_the_measured_and_synthetic_groups_apart(measured):
    source = InMemorySource(measured)
    mean_counts = mean_counts_per_pattern(source)
    combined, groups = with_synthetic_patterns(source, n_patterns=90, object_kind="lines", mean_counts=mean_counts,
                                               gridsize=2, n_neighbors=8, groups_per_position=1, seed=0)
    assert isinstance(combined, CombinedSource) and combined.n_patterns == 210 and combined.N == 32
    assert groups.n_groups == 90 and groups.indices.min() >= 120 and groups.indices.max() == 209
    np.testing.assert_array_equal(combined.probe, measured.probe)
    assert combined.object is None
    indices = np.array([150, 3, 209, 0, 120])
    read = combined.read_amplitudes(indices)
    np.testing.assert_array_equal(read[1], measured.amplitudes[3])
    np.testing.assert_array_equal(read[3], measured.amplitudes[0])
    np.testing.assert_array_equal(read[[0, 2, 4]], combined.synthetic.amplitudes[[30, 89, 0]])
    members = combined.positions[groups.indices]  # each synthetic group is a tight cluster of its own scan
    assert np.ptp(members, axis=1).max() < 4 * scan_step(measured.positions)


def test_training_adds_synthetic_groups_to_training_only(measured):
    config = TrainingConfig(model=ModelConfig(N=32, gridsize=2, n_filters_scale=1), nepochs=1, batch_size=16,
                            validation_fraction=0.25, synthetic_patterns=64)
    model = train(measured, config)
    plain = train(measured, TrainingConfig(model=ModelConfig(N=32, gridsize=2, n_filters_scale=1), nepochs=1,
                                           batch_size=16, validation_fraction=0.25))
    summary = model.summary
    assert summary["n_patterns"] == 120 and summary["n_synthetic_patterns"] == 64
    assert summary["n_validation_groups"] == plain.summary["n_validation_groups"] == 30
    assert summary["n_train_groups"] == plain.summary["n_train_groups"] + 64 == 154
    assert "64 synthetic patterns" in summary["training_data"]
    assert np.isfinite(model.history["loss"]).all()
    assert model.history["loss"] != plain.history["loss"]


def test_synthetic_configuration_errors_are_clear(tmp_path):
    pinn = ModelConfig(N=32, gridsize=2)
    with pytest.raises(ConfigError, match="synthetic_patterns"):
        TrainingConfig(model=pinn, synthetic_patterns=-1).validate()
    with pytest.raises(ConfigError, match="at least gridsize"):
        TrainingConfig(model=pinn, synthetic_patterns=3).validate()
    for missing in ("none.png", "none.npz"):
        with pytest.raises(ConfigError, match="synthetic_object.*PNG image or a reconstruction NPZ.*no such file"):
            TrainingConfig(model=pinn, synthetic_patterns=8, synthetic_object=str(tmp_path / missing)).validate()
    with pytest.raises(ConfigError, match="supervised"):
        TrainingConfig(model=ModelConfig(N=32, model_type="supervised"), synthetic_patterns=8).validate()
    with pytest.raises(ConfigError, match="real-space"):
        TrainingConfig(model=pinn, synthetic_patterns=8, realspace_mae_weight=1.0).validate()
    TrainingConfig(model=pinn, synthetic_patterns=0, synthetic_object="anything").validate()  # unused: fine
