"""The Ptychodus 1.7 compatibility facade (`ptycho.params`, `raw_data`, `probe`, `loader`, `tf_helper`,
`model_manager`, `workflows.components`), called in-process exactly as Ptychodus' child calls it."""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ptycho import loader, model_manager, params, probe, tf_helper
from ptycho.bundle import BundleError
from ptycho.config.config import (
    ConfigError,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    update_legacy_dict,
)
from ptycho.raw_data import RawData
from ptycho.scan import ScanDataError
from ptycho.workflows import components

N = 32


@pytest.fixture(autouse=True)
def fresh_params(monkeypatch):
    """Every test starts with an empty legacy dictionary (the facade's only state)."""
    monkeypatch.setattr(params, "cfg", {})


def _raw_from_counts(scan, counts=None, obj=None, positions=None) -> RawData:
    """RawData as Ptychodus' child builds it: counts, a (modes, N, N) probe, zero scan indexes."""
    counts = np.square(scan.amplitudes.astype(np.float64)) if counts is None else counts
    positions = scan.positions if positions is None else positions
    return RawData.from_coords_without_pc(
        xcoords=positions[:, 0], ycoords=positions[:, 1], diff3d=counts, probeGuess=scan.probe[np.newaxis],
        scan_index=np.zeros(len(positions), dtype=int), objectGuess=scan.object if obj is None else obj)


@pytest.fixture(scope="module")
def scan():
    from ptycho.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(N=N, n_images=120, step=4.0, nphotons=1e5, seed=3))


@pytest.fixture(scope="module")
def trained(scan, tmp_path_factory):
    """One short training through the facade (as Ptychodus' train child runs it) and its outputs."""
    saved = dict(params.cfg)
    params.cfg.clear()
    try:
        config = TrainingConfig(model=ModelConfig(N=0, n_filters_scale=1), nepochs=1, batch_size=16)
        raw = _raw_from_counts(scan)
        config.model.N = raw.diff3d.shape[-1]
        update_legacy_dict(params.cfg, config)
        amplitude, phase, results = components.run_cdi_example(raw, raw, config)
        out = tmp_path_factory.mktemp("trained")
        bundle = model_manager.save(out)
        written = components.save_outputs(amplitude, phase, results, str(out))
        return {"amplitude": amplitude, "phase": phase, "results": results, "dir": out, "bundle": bundle,
                "written": written, "intensity_scale": params.cfg["intensity_scale"]}
    finally:
        params.cfg.clear()
        params.cfg.update(saved)


def _inference_settings(n: int = N, gridsize: int = 1) -> None:
    update_legacy_dict(params.cfg, InferenceConfig(model=ModelConfig(N=n, gridsize=gridsize)))


# ------------------------------------------------------------------------------------------ parent side
def test_parent_side_modules_import_no_tensorflow():
    code = ("import sys, ptycho.config.config, ptycho.params, ptycho.raw_data, ptycho.probe, ptycho.loader, "
            "ptycho.tf_helper, ptycho.model_manager, ptycho.workflows.components; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_ptychodus_builds_picklable_mutable_configs():
    """Ptychodus' own config builders accept our classes; the child can set model.N after unpickling."""
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn import reconstructor
    from ptychodus.model.ptychopinn.settings import (
        PtychoPINNModelSettings,
        PtychoPINNTrainingSettings,
    )

    registry = SettingsRegistry()
    model_settings, training_settings = PtychoPINNModelSettings(registry), PtychoPINNTrainingSettings(registry)
    training = pickle.loads(pickle.dumps(
        reconstructor._build_training_config(model_settings, training_settings, "PINN")))
    inference = pickle.loads(pickle.dumps(
        reconstructor._build_inference_config(model_settings, "Supervised", 64, is_developer_mode_enabled=False)))
    training.model.N = 64
    assert (training.model.N, training.model.model_type, training.nepochs, training.batch_size) == (64, "pinn", 50, 16)
    assert (inference.model.N, inference.model.model_type, inference.model.n_filters_scale) == (64, "supervised", 2)
    update_legacy_dict(params.cfg, training)
    assert (params.get("N"), params.get("gridsize"), params.get("nll_weight")) == (64, 1, 1.0)


def test_params_get_raises_key_error_when_unset():
    with pytest.raises(KeyError, match="intensity_scale"):
        params.get("intensity_scale")
    params.cfg["intensity_scale"] = 2.5
    assert params.get("intensity_scale") == 2.5


# ------------------------------------------------------------------------------------------ RawData
def test_raw_data_converts_uint16_counts_to_amplitudes():
    rng = np.random.default_rng(0)
    counts = rng.integers(65000, 65536, size=(5, 8, 8)).astype(np.uint16)
    probe_modes = (rng.normal(size=(2, 8, 8)) + 1j * rng.normal(size=(2, 8, 8))).astype(np.complex64)
    x, y = np.arange(5.0) + 10, np.arange(5.0) + 12
    with pytest.warns(UserWarning, match="2 probe modes"):
        raw = RawData.from_coords_without_pc(xcoords=x, ycoords=y, diff3d=counts, probeGuess=probe_modes,
                                             scan_index=np.zeros(5, int), objectGuess=np.ones((30, 30), np.complex64))
    assert raw.diff3d.dtype == np.float32 and raw.diff3d.shape == (5, 8, 8)
    np.testing.assert_array_equal(raw.diff3d, np.sqrt(counts.astype(np.float64)).astype(np.float32))
    assert raw.diff3d.max() > 255.0  # no uint16 wrap-around
    np.testing.assert_array_equal(raw.probeGuess, probe_modes[0])
    np.testing.assert_array_equal(raw.xcoords, x)
    np.testing.assert_array_equal(raw.ycoords_start, y)
    assert raw.objectGuess.shape == (30, 30)


@pytest.mark.parametrize("case, match", [
    ("non-square", r"'diff3d': expected .*square"),
    ("nan", r"'diff3d': expected finite counts"),
    ("outside", r"'xcoords/ycoords': expected positions inside the object grid"),
    ("lengths", r"'xcoords/ycoords': expected one x and one y per position"),
    ("probe", r"'probeGuess': expected complex \(8, 8\)"),
])
def test_raw_data_rejects_bad_input_with_one_line(case, match):
    counts = np.ones((4, 8, 8), np.uint16)
    x = y = np.array([5.0, 6.0, 7.0, 8.0])
    probe_guess, obj = np.ones((1, 8, 8), np.complex64), np.ones((20, 20), np.complex64)
    if case == "non-square":
        counts = np.ones((4, 8, 10), np.uint16)
    elif case == "nan":
        counts = counts.astype(np.float32)
        counts[1, 2, 3] = np.nan
    elif case == "outside":
        x = np.array([5.0, 6.0, 7.0, 25.0])
    elif case == "lengths":
        y = y[:3]
    elif case == "probe":
        probe_guess = np.ones((1, 6, 6), np.complex64)
    with pytest.raises(ScanDataError, match=match) as info:
        RawData.from_coords_without_pc(xcoords=x, ycoords=y, diff3d=counts, probeGuess=probe_guess,
                                       scan_index=np.zeros(4, int), objectGuess=obj)
    assert "\n" not in str(info.value) and str(info.value).startswith("Ptychodus input: ")


def test_raw_data_from_exported_training_npz(tmp_path, scan):
    """Ptychodus' own exporter writes counts (+ bad_pixels); from_file reads them back as amplitudes."""
    from ptychodus.api.io import save_ptychopinn_training_data
    from ptychodus.api.reconstruct import prepare_reconstruct_input

    from ptychopinn_plugin.ptychodus_compat import scan_to_ptychodus

    product, diffraction = scan_to_ptychodus(scan, counts_dtype=np.uint16)
    save_ptychopinn_training_data(tmp_path / "train_data.npz", prepare_reconstruct_input(diffraction, product))
    raw = RawData.from_file(tmp_path / "train_data.npz")
    np.testing.assert_allclose(raw.diff3d, scan.amplitudes, rtol=1e-6)
    np.testing.assert_allclose(raw.xcoords, scan.x, atol=1e-9)
    np.testing.assert_allclose(raw.ycoords, scan.y, atol=1e-9)
    np.testing.assert_array_equal(raw.objectGuess, scan.object)


# ------------------------------------------------------------------------------------------ grouping
def test_grouping_covers_every_position_and_loader_normalises(scan):
    raw = _raw_from_counts(scan)
    params.cfg["intensity_scale"] = 7.0
    probe.set_probe_guess(None, raw.probeGuess[np.newaxis])
    np.testing.assert_array_equal(probe.get_probe_guess(), scan.probe)

    grouped = raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=1)  # the GUI's default NumSamples
    data = loader.load(lambda: grouped, raw.probeGuess, which=None, create_split=False)
    assert data.X.shape == (scan.n_patterns, N, N, 1) and data.X.dtype == np.float32
    assert sorted(data.indices[:, 0]) == list(range(scan.n_patterns))
    np.testing.assert_allclose(data.X * params.get("intensity_scale"), scan.amplitudes[data.indices].transpose(0, 2, 3, 1),
                               rtol=1e-6)
    np.testing.assert_array_equal(data.global_offsets, scan.positions[data.indices])
    assert params.get("object_shape") == scan.object.shape

    grouped = raw.generate_grouped_data(N, K=7, nsamples=2, gridsize=2)  # NumSamples = 2 passes
    data = loader.load(lambda: grouped, raw.probeGuess)
    g = data.n_groups
    assert 2 * scan.n_patterns / 4 <= g < scan.n_patterns and data.X.shape == (g, N, N, 4)
    assert data.local_offsets.shape == data.global_offsets.shape == (g, 4, 2)
    np.testing.assert_allclose(data.global_offsets - data.global_offsets.mean(axis=1, keepdims=True),
                               data.local_offsets, atol=1e-9)
    assert np.bincount(data.indices.ravel(), minlength=scan.n_patterns).min() >= 2  # every pattern, twice

    params.cfg["gridsize"] = 2  # gridsize omitted (Nov-2025 Ptychodus): taken from the settings
    assert raw.generate_grouped_data(N, K=7).local_offsets.shape[1] == 4


def test_grouping_errors_name_the_setting(scan):
    raw = _raw_from_counts(scan)
    with pytest.raises(ConfigError, match=r"NumNearestNeighbors \(K\) = 7 does not suit GridSize = 3.*\[8, 62\]"):
        raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=3)
    with pytest.raises(ScanDataError, match=r"model size N = 64 does not match the 32 x 32"):
        raw.generate_grouped_data(64, K=7)


def test_loader_needs_an_intensity_scale(scan):
    grouped = _raw_from_counts(scan).generate_grouped_data(N)
    with pytest.raises(RuntimeError, match="no intensity scale: load a model"):
        loader.load(lambda: grouped, scan.probe)


# ------------------------------------------------------------------------------------------ stitching
def test_reassemble_position_lands_on_the_input_grid():
    rng = np.random.default_rng(1)
    obj = (rng.uniform(0.5, 1, (70, 90)) * np.exp(1j * rng.uniform(-1, 1, (70, 90)))).astype(np.complex64)
    ys, xs = np.meshgrid(np.arange(20, 51, 6), np.arange(20, 71, 6), indexing="ij")
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    patches = np.stack([obj[int(y) - N // 2:int(y) + N // 2, int(x) - N // 2:int(x) + N // 2] for x, y in positions])
    params.cfg["object_shape"] = obj.shape

    image = tf_helper.reassemble_position(patches[..., np.newaxis], positions[:, np.newaxis, :], M=20)
    assert image.shape == obj.shape and image.dtype == np.complex64
    covered = image != 0
    assert covered[20:51, 20:71].all() and not covered[:2].any()  # whole scan, exactly where the patches were
    np.testing.assert_allclose(image[covered], obj[covered], rtol=1e-5)

    grouped = patches[:24].reshape(6, 4, N, N).transpose(0, 2, 3, 1)  # gridsize 2: (g, N, N, C)
    image = tf_helper.reassemble_position(grouped, positions[:24].reshape(6, 4, 2), M=20)
    covered = image != 0
    np.testing.assert_allclose(image[covered], obj[covered], rtol=1e-5)
    with pytest.raises(ValueError, match=r"global_offsets: expected absolute positions of shape \(6, 4, 2\)"):
        tf_helper.reassemble_position(grouped, positions[:6], M=20)


def test_kept_size_is_never_below_half_the_patch():
    assert [tf_helper.kept_size(m, 64) for m in (20, 32, 40, 100)] == [32, 32, 40, 64]


# ------------------------------------------------------------------------------------------ models
def test_training_writes_a_bundle_and_outputs(trained, scan):
    assert trained["bundle"] == trained["dir"] / "wts.h5.zip" and zipfile.is_zipfile(trained["bundle"])
    assert trained["amplitude"].shape == trained["phase"].shape == scan.object.shape
    assert len(trained["results"].history["loss"]) == 1
    assert {p.name for p in trained["written"]} == {"history.json", "loss.png", "reconstruction.npz",
                                                    "reconstruction.png"}
    with np.load(trained["dir"] / "reconstruction.npz") as saved:
        np.testing.assert_array_equal(saved["amplitude"], trained["amplitude"].astype(np.float32))
        np.testing.assert_array_equal(saved["phase"], trained["phase"].astype(np.float32))


def test_inference_through_the_facade_equals_the_core(trained, scan):
    """Ptychodus' inference sequence gives the core's reconstruction, on the input object's grid."""
    from ptycho.inference import reconstruct

    _inference_settings()
    model, config = components.load_inference_bundle(trained["dir"])
    assert (config.N, config.gridsize, config.n_filters_scale) == (N, 1, 1)
    assert params.get("intensity_scale") == pytest.approx(trained["intensity_scale"])
    raw = _raw_from_counts(scan)
    probe.set_probe_guess(None, raw.probeGuess)
    grouped = raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=1)
    data = loader.load(lambda: grouped, raw.probeGuess, which=None, create_split=False)
    patches = model.predict([data.X * params.get("intensity_scale"), data.local_offsets])
    assert patches.shape == (scan.n_patterns, N, N, 1) and patches.dtype == np.complex64
    image = tf_helper.reassemble_position(patches, data.global_offsets, M=4)  # keeps N/2, the core default

    core = reconstruct(trained["results"].model, scan).object
    assert image.shape == scan.object.shape
    np.testing.assert_allclose(image, core, atol=2e-5)
    np.testing.assert_allclose(np.abs(image), trained["amplitude"], atol=2e-5)
    with pytest.raises(ValueError, match=r"expected shape \(g, 32, 32, 1\) for this model"):
        model.predict([data.X[..., :1].repeat(4, axis=-1), data.local_offsets])


def test_unpacked_bundle_loads_like_the_zip(trained, tmp_path):
    """Ptychodus unpacks a saved model.zip (which is our wts.h5.zip) into a folder; that folder loads."""
    with zipfile.ZipFile(trained["bundle"]) as archive:
        archive.extractall(tmp_path)
    _inference_settings()
    model, config = components.load_inference_bundle(tmp_path)
    assert config.N == N and model.trained.intensity_scale == pytest.approx(trained["intensity_scale"])


@pytest.mark.parametrize("settings, match", [
    ({"n": 64}, r"trained on 32 x 32 diffraction patterns, but the data have 64 x 64 patterns"),
    ({"gridsize": 2}, r"trained with gridsize 1, but the GridSize setting is 2; set GridSize to 1"),
])
def test_bundle_that_does_not_fit_the_data_is_refused(trained, settings, match):
    _inference_settings(**settings)
    with pytest.raises(ValueError, match=match) as info:
        components.load_inference_bundle(trained["dir"])
    assert "\n" not in str(info.value)


def test_broken_bundles_are_refused(trained, tmp_path):
    _inference_settings()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no model bundle 'wts.h5.zip' in this directory"):
        components.load_inference_bundle(empty)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "wts.h5.zip").write_bytes(trained["bundle"].read_bytes()[:2000])
    with pytest.raises(BundleError, match="corrupted, truncated or not a zip file"):
        components.load_inference_bundle(truncated)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a model")
    with pytest.raises(BundleError, match="holds neither 'wts.h5.zip' nor the unpacked contents"):
        components.load_inference_bundle(foreign)


def test_model_manager_save_needs_a_trained_model(tmp_path):
    with pytest.raises(RuntimeError, match="no model has been trained in this process"):
        model_manager.save(tmp_path)


def test_training_draws_enough_neighbours_for_gridsize_3(monkeypatch, scan):
    """Ptychodus has no K setting for training: gridsize 3 gets K = 8 instead of the default 7."""
    import ptycho.training

    seen = {}

    def fake_train(data, config):
        seen["K"] = config.n_nearest_neighbors
        raise RuntimeError("stop here")

    monkeypatch.setattr(ptycho.training, "train", fake_train)
    config = TrainingConfig(model=ModelConfig(N=N, gridsize=3), nepochs=1)
    with pytest.raises(RuntimeError, match="stop here"):
        components.run_cdi_example(_raw_from_counts(scan), None, config)
    assert seen["K"] == 8 and config.n_nearest_neighbors == 7


def test_gridsize_2_inference_through_the_facade_equals_the_core(scan, tmp_path):
    """With C = 4 patches per group, the facade's per-member positions place every patch as the core does
    (an untrained network is enough: the check is on the plumbing, not on the weights). A 'stacked'
    network, because the core predicts it group by group as the facade does (a per-pattern network
    infers through its gridsize-1 twin there)."""
    from ptycho.bundle import save_bundle
    from ptycho.datasource import InMemorySource
    from ptycho.grouping import cover_positions
    from ptycho.inference import reconstruct
    from ptycho.networks import build_model
    from ptycho.training import TrainedModel, model_spec_for

    config = TrainingConfig(model=ModelConfig(N=N, gridsize=2, n_filters_scale=1, network_layout="stacked"))
    spec = model_spec_for(InMemorySource(scan), config, cover_positions(scan.positions, 2))
    untrained = TrainedModel(build_model(spec), spec)
    save_bundle(untrained, tmp_path)

    _inference_settings(gridsize=2)
    model, _ = components.load_inference_bundle(tmp_path)
    raw = _raw_from_counts(scan)
    data = loader.load(lambda: raw.generate_grouped_data(N, K=7, nsamples=1, gridsize=2), raw.probeGuess)
    patches = model.predict([data.X * params.get("intensity_scale"), data.local_offsets], batch_size=16)
    assert patches.shape == (data.n_groups, N, N, 4)
    image = tf_helper.reassemble_position(patches, data.global_offsets, M=4)
    np.testing.assert_allclose(image, reconstruct(untrained, scan).object, atol=2e-5)
