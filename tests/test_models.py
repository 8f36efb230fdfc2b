"""Models, training, inference and bundles on small simulated data (CI-sized)."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
from keras import ops
import pytest

from ptycho import metrics
from ptycho.bundle import BundleError, load_bundle, read_manifest, save_bundle
from ptycho.config.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.datasource import HDF5Source, NpzMemmapSource, write_scan_hdf5
from ptycho.inference import inference_network, reconstruct
from ptycho.networks import build_model
from ptycho.npz_io import save_scan_npz
from ptycho.simulate import SimulationConfig, simulate
from ptycho.stitching import illumination_weight, stitch_patches
from ptycho.training import ProgressCallback, TrainedModel, model_spec_for, train
from ptycho.datasource import InMemorySource
from ptycho.grouping import group_positions


@pytest.fixture(scope="module")
def lines_scan():
    return simulate(SimulationConfig(N=32, n_images=900, step=3.0, nphotons=1e6, seed=0))


def _pinn_config(**overrides) -> TrainingConfig:
    model = ModelConfig(N=32, gridsize=2, n_filters_scale=1)
    return TrainingConfig(model=model, **{"nepochs": 12, "batch_size": 16, **overrides})


@pytest.fixture(scope="module")
def trained_pinn(lines_scan):
    return train(lines_scan, _pinn_config())


def _untrained(scan, config: TrainingConfig) -> TrainedModel:
    groups = group_positions(scan.positions, config.model.gridsize, n_neighbors=8)
    spec = model_spec_for(InMemorySource(scan), config, groups)
    return TrainedModel(build_model(spec), spec)


def _nll(scan, result) -> float:
    """Poisson NLL per pixel of the measured counts given the predicted amplitudes."""
    predicted = result.predicted_amplitudes.astype(np.float64) ** 2 + 1e-8
    measured = scan.amplitudes.astype(np.float64) ** 2
    return float(np.mean(predicted - measured * np.log(predicted)))


def test_pinn_training_improves_reconstruction_and_data_fit(lines_scan, trained_pinn):
    region = metrics.scanned_region(lines_scan.positions, lines_scan.N, lines_scan.object.shape)
    before_model = _untrained(lines_scan, _pinn_config())
    before = reconstruct(before_model, lines_scan, return_diffraction=True)
    after = reconstruct(trained_pinn, lines_scan, return_diffraction=True)
    assert after.object.shape == lines_scan.object.shape
    score_before = metrics.evaluate(before.object, lines_scan.object, region=region)
    score_after = metrics.evaluate(after.object, lines_scan.object, region=region)
    print("before", score_before, "\nafter", score_after)
    assert score_after["phase_ssim"] > score_before["phase_ssim"] + 0.2
    assert score_after["amp_ssim"] > score_before["amp_ssim"] + 0.05
    assert _nll(lines_scan, after) < _nll(lines_scan, before)
    history = trained_pinn.history
    assert len(history["loss"]) == 12 and history["loss"][-1] < history["loss"][0]
    assert "val_loss" in history
    rates = history["learning_rate"]
    assert rates[0] == pytest.approx(1e-3)
    assert len(rates) == 12 and sorted(rates, reverse=True) == rates  # only ever reduced


def test_the_history_holds_each_epochs_learning_rate_after_reductions_on_plateau():
    """ReduceLROnPlateau runs after the progress callback: the history still shows every reduction, from
    the epoch that first trained with the reduced rate."""
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    network = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    trained = TrainedModel(network, spec=None)
    reports = []
    always_a_plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    network.fit(x, 3 * x, epochs=4, verbose=0,
                callbacks=[ProgressCallback(trained, 4, reports.append), always_a_plateau])
    # epoch 1 sets the best loss; every later epoch misses it by min_delta and halves the rate
    assert trained.history["learning_rate"] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert [report.losses["learning_rate"] for report in reports] == trained.history["learning_rate"]
    assert len(trained.history["loss"]) == 4


def test_inference_stitches_with_the_probe_intensity_as_weights(lines_scan, trained_pinn):
    grid = (lines_scan.object.shape, (0.0, 0.0))
    weighted = reconstruct(trained_pinn, lines_scan, grid=grid, return_patches=True)
    plain = reconstruct(trained_pinn, lines_scan, grid=grid, illumination_weighted=False)
    by_hand = stitch_patches(weighted.patches, lines_scan.positions, shape=grid[0],
                             weight=illumination_weight(trained_pinn.probe))
    np.testing.assert_allclose(weighted.object, by_hand.image, atol=1e-5)
    np.testing.assert_array_equal(weighted.weights > 0, plain.weights > 0)  # same coverage
    assert np.max(np.abs(weighted.object - plain.object)) > 1e-3
    region = metrics.scanned_region(lines_scan.positions, lines_scan.N, lines_scan.object.shape)
    scores = {name: metrics.evaluate(result.object, lines_scan.object, region=region)
              for name, result in (("weighted", weighted), ("plain", plain))}
    print(scores)
    assert scores["weighted"]["amp_ssim"] > scores["plain"]["amp_ssim"]


def test_refine_steps_move_the_patches_towards_their_data(lines_scan, trained_pinn):
    """Data-consistency steps after the network lower the data misfit step by step and sharpen the
    amplitude; the predicted diffraction is that of the refined patches."""
    region = metrics.scanned_region(lines_scan.positions, lines_scan.N, lines_scan.object.shape)
    results = [reconstruct(trained_pinn, lines_scan, refine_steps=k, return_diffraction=True, return_patches=True)
               for k in (0, 2, 10)]
    misfits = [_nll(lines_scan, r) for r in results]
    assert misfits[0] > misfits[1] > misfits[2]
    amplitude = [metrics.evaluate(r.object, lines_scan.object, region=region)["amp_ssim"] for r in results]
    assert amplitude[2] > amplitude[0] + 0.05
    probe, scale = trained_pinn.probe, trained_pinn.intensity_scale
    expected = scale * np.abs(np.fft.fftshift(np.fft.fft2(probe * results[1].patches, norm="ortho"), axes=(-2, -1)))
    np.testing.assert_allclose(results[1].predicted_amplitudes, expected, rtol=1e-3, atol=1e-3 * expected.max())
    with pytest.raises(ValueError, match="refine_steps: expected an integer >= 0"):
        reconstruct(trained_pinn, lines_scan, refine_steps=-1)


def test_bundle_round_trip_is_bit_identical(tmp_path, lines_scan, trained_pinn):
    path = save_bundle(trained_pinn, tmp_path / "model")
    assert path == tmp_path / "model" / "wts.h5.zip"
    manifest = read_manifest(path)
    assert manifest["N"] == 32 and manifest["gridsize"] == 2
    assert manifest["history"]["loss"] == trained_pinn.history["loss"]
    loaded = load_bundle(tmp_path / "model")
    subset = lines_scan.subset(np.arange(200))
    a = reconstruct(trained_pinn, subset, grid=(lines_scan.object.shape, (0.0, 0.0)))
    b = reconstruct(loaded, subset, grid=(lines_scan.object.shape, (0.0, 0.0)))
    assert np.array_equal(a.object, b.object)
    assert loaded.intensity_scale == trained_pinn.intensity_scale
    np.testing.assert_array_equal(loaded.probe, trained_pinn.probe)


@pytest.mark.parametrize("probe_trainable, scale_trainable", [(True, True), (False, False)])
def test_trainable_probe_or_fixed_scale_infers_and_round_trips(tmp_path, lines_scan, probe_trainable,
                                                               scale_trainable):
    """Which physics variables train changes Keras' variable order; neither inference (through the
    per-pattern twin) nor bundles may depend on it."""
    subset = lines_scan.subset(np.arange(256))
    model = train(subset, _pinn_config(nepochs=1, probe_trainable=probe_trainable,
                                       intensity_scale_trainable=scale_trainable))
    probe_change = np.abs(model.probe - model.spec.probe).max() / np.abs(model.spec.probe).max()
    assert (probe_change > 1e-4) == probe_trainable
    assert (model.intensity_scale != pytest.approx(model.spec.intensity_scale, rel=1e-6)) == scale_trainable
    grid = (lines_scan.object.shape, (0.0, 0.0))
    before = reconstruct(model, subset, grid=grid).object
    loaded = load_bundle(save_bundle(model, tmp_path / "model"))
    np.testing.assert_array_equal(loaded.probe, model.probe)
    assert loaded.intensity_scale == model.intensity_scale
    assert np.array_equal(reconstruct(loaded, subset, grid=grid).object, before)


@pytest.mark.parametrize("damage", ["truncated", "not_zip", "no_manifest", "bad_version", "empty"])
def test_bad_bundles_give_clear_errors(tmp_path, trained_pinn, damage):
    good = save_bundle(trained_pinn, tmp_path / "good.zip")
    bad = tmp_path / "bad.zip"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "not_zip":
        bad.write_text("hello")
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.namelist():
                data = src.read(item)
                if item == "manifest.json":
                    if damage == "no_manifest":
                        continue
                    data = json.dumps({**json.loads(data), "format_version": 99}).encode()
                dst.writestr(item, data)
    with pytest.raises(BundleError, match="bad.zip"):
        load_bundle(bad)


@pytest.mark.parametrize("version, layout", [(1, "stacked"), (2, "per_pattern"), (3, "per_pattern")])
def test_older_bundles_load_with_the_settings_they_were_written_with(tmp_path, lines_scan, version, layout):
    """Version 1 predates network_layout (all stacked), versions 1-2 predate merge_border_weight (1.0),
    versions 1-3 predate decoder_block ('upsample_conv')."""
    config = _pinn_config()
    config.model.network_layout = layout
    if version < 3:
        config.model.merge_border_weight = 1.0
    config.model.decoder_block = "upsample_conv"
    model = _untrained(lines_scan, config)
    path = save_bundle(model, tmp_path / "current.zip")
    old = tmp_path / f"v{version}.zip"
    unstated = {1: ("network_layout", "merge_border_weight", "decoder_block"),
                2: ("merge_border_weight", "decoder_block"), 3: ("decoder_block",)}[version]
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "manifest.json":
                manifest = json.loads(data)
                for key in unstated:
                    del manifest["model"][key]
                data = json.dumps({**manifest, "format_version": version}).encode()
            dst.writestr(item, data)
    loaded = load_bundle(old)
    assert (loaded.config.network_layout, loaded.config.merge_border_weight, loaded.config.decoder_block) == (
        layout, config.model.merge_border_weight, "upsample_conv")
    subset = lines_scan.subset(np.arange(64))
    grid = (lines_scan.object.shape, (0.0, 0.0))
    assert np.array_equal(reconstruct(model, subset, grid=grid).object, reconstruct(loaded, subset, grid=grid).object)


@pytest.mark.parametrize("layout", ["per_pattern", "stacked"])
def test_network_layouts(lines_scan, layout):
    """per_pattern: a pattern's predicted patch depends on that pattern only (shared weights); stacked:
    on the whole group."""
    config = _pinn_config()
    config.model.network_layout = layout
    keras_model = _untrained(lines_scan, config).keras_model
    rng = np.random.default_rng(0)
    group = rng.uniform(0, 3, (1, 32, 32, 4)).astype(np.float32)
    changed = group.copy()
    changed[..., 1:] = rng.uniform(0, 3, (1, 32, 32, 3))
    offsets = np.zeros((1, 4, 2), np.float32)
    a, b = (ops.convert_to_numpy(keras_model({"diffraction": g, "offsets": offsets})["object_amplitude"]) for g in (group, changed))
    first_same = np.allclose(a[..., 0], b[..., 0], atol=1e-6)
    assert first_same == (layout == "per_pattern")
    assert not np.allclose(a[..., 1:], b[..., 1:])
    if layout == "per_pattern":
        swapped = ops.convert_to_numpy(keras_model({"diffraction": np.ascontiguousarray(group[..., ::-1]), "offsets": offsets})["object_amplitude"])
        np.testing.assert_allclose(swapped[..., ::-1], a, atol=1e-6)


@pytest.mark.parametrize("block, conv_side", [("conv_upsample", 4), ("upsample_conv", 8)])
def test_decoder_blocks(lines_scan, block, conv_side):
    """N=32, pad_object: the decoders take the 4 x 4 bottleneck to the 16 x 16 solution region;
    'conv_upsample' convolves the first level at 4 x 4, 'upsample_conv' at 8 x 8."""
    config = _pinn_config()
    config.model.decoder_block = block
    keras_model = _untrained(lines_scan, config).keras_model
    for head in ("amplitude", "phase"):
        assert keras_model.get_layer(f"dec_{head}0_conv1").output.shape[1:3] == (conv_side, conv_side)
        assert keras_model.get_layer(f"{head}_fine").output.shape[1:3] == (16, 16)
    group = np.random.default_rng(0).uniform(0, 3, (2, 32, 32, 4)).astype(np.float32)
    out = keras_model({"diffraction": group, "offsets": np.zeros((2, 4, 2), np.float32)})
    assert ops.convert_to_numpy(out["object_amplitude"]).shape == (2, 32, 32, 4)


def test_single_pattern_twin_predicts_what_the_group_network_predicts(lines_scan):
    """Inference runs a per-pattern network as its gridsize-1 twin: same heads' output per pattern."""
    model = _untrained(lines_scan, _pinn_config())
    network, gridsize = inference_network(model)
    assert gridsize == 1 and network.input["diffraction"].shape[-1] == 1
    group = np.random.default_rng(1).uniform(0, 3, (2, 32, 32, 4)).astype(np.float32)
    grouped = model.keras_model({"diffraction": group, "offsets": np.zeros((2, 4, 2), np.float32)})
    for k in range(4):
        single = network({"diffraction": group[..., k:k + 1], "offsets": np.zeros((2, 1, 2), np.float32)})
        for head in ("object_amplitude", "object_phase"):
            np.testing.assert_allclose(ops.convert_to_numpy(single[head])[..., 0],
                                       ops.convert_to_numpy(grouped[head])[..., k], atol=1e-5)
    stacked = _pinn_config()
    stacked.model.network_layout = "stacked"
    assert inference_network(_untrained(lines_scan, stacked))[1] == 2


def test_reconstruct_reuses_its_compiled_predictor_and_follows_weight_changes(lines_scan):
    """The second reconstruct call reuses the first one's compiled function, which reads the model's
    current weights (also through a per-pattern network's twin), so it is never stale."""
    model = _untrained(lines_scan, _pinn_config())
    subset, grid = lines_scan.subset(np.arange(64)), (lines_scan.object.shape, (0.0, 0.0))
    first = reconstruct(model, subset, grid=grid).object
    (entry,) = model.compiled.values()
    assert np.array_equal(reconstruct(model, subset, grid=grid).object, first)
    assert list(model.compiled.values()) == [entry] and model.compiled[("predict", False)] is entry
    layer = model.keras_model.get_layer("amplitude_fine")
    layer.set_weights([w * 0.5 for w in layer.get_weights()])
    changed = reconstruct(model, subset, grid=grid).object
    fresh = reconstruct(TrainedModel(model.keras_model, model.spec), subset, grid=grid).object
    assert np.abs(changed - first).max() > 1e-3
    np.testing.assert_allclose(changed, fresh, atol=1e-6)


def test_fine_tuning_starts_from_the_initial_model_and_uses_the_new_probe(trained_pinn):
    other_probe = SimulationConfig(N=32, n_images=200, step=3.0, nphotons=1e6, seed=5, probe_defocus=2.0)
    new_scan = simulate(other_probe)  # another object, another probe
    config = lambda **kw: _pinn_config(validation_fraction=0, **kw)  # noqa: E731
    frozen = train(new_scan, config(nepochs=1, learning_rate=1e-12), initial=trained_pinn)
    peak = np.abs(new_scan.probe).max()  # the physics uses the new scan's probe (denormals flush to 0)
    np.testing.assert_allclose(frozen.probe, new_scan.probe, rtol=1e-6, atol=1e-30 * peak)
    assert frozen.intensity_scale == pytest.approx(trained_pinn.intensity_scale, rel=1e-6)
    grid = (new_scan.object.shape, (0.0, 0.0))
    np.testing.assert_allclose(reconstruct(frozen, new_scan, grid=grid).object,
                               reconstruct(trained_pinn, new_scan, grid=grid).object, atol=1e-5)
    tuned = train(new_scan, config(nepochs=2), initial=trained_pinn)
    scratch = train(new_scan, config(nepochs=2))
    print("fine-tuned", tuned.history["loss"], "from scratch", scratch.history["loss"])
    assert tuned.history["loss"][0] < 0.5 * scratch.history["loss"][0]
    assert tuned.history["loss"][-1] < scratch.history["loss"][-1]
    assert tuned.summary["initial_model_data"] == trained_pinn.summary["training_data"]
    with pytest.raises(ConfigError, match="initial model's configuration.*gridsize"):
        train(new_scan, TrainingConfig(model=ModelConfig(N=32, gridsize=1, n_filters_scale=1)), initial=trained_pinn)


def test_two_builds_with_different_n_and_gridsize_in_one_process(lines_scan):
    small = simulate(SimulationConfig(N=64, n_images=40, step=8.0, nphotons=1e6, seed=3))
    m64 = train(small, TrainingConfig(model=ModelConfig(N=64, gridsize=1, n_filters_scale=1), nepochs=1,
                                       validation_fraction=0))
    m32 = train(lines_scan.subset(np.arange(64)), _pinn_config(nepochs=1, validation_fraction=0))
    r64 = reconstruct(m64, small)
    r32 = reconstruct(m32, lines_scan.subset(np.arange(64)), grid=(lines_scan.object.shape, (0.0, 0.0)))
    assert r64.object.shape == small.object.shape and np.isfinite(r64.object).all()
    assert r32.object.shape == lines_scan.object.shape and np.isfinite(r32.object).all()
    assert m64.keras_model.input["diffraction"].shape[1:] == (64, 64, 1)
    assert m32.keras_model.input["diffraction"].shape[1:] == (32, 32, 4)


def test_training_is_seeded_and_repeatable(lines_scan):
    subset = lines_scan.subset(np.arange(96))
    config = lambda: _pinn_config(nepochs=2, validation_fraction=0)  # noqa: E731
    a = train(subset, config()).history["loss"]
    b = train(subset, config()).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_supervised_baseline_learns_from_ground_truth(lines_scan):
    config = TrainingConfig(model=ModelConfig(N=32, gridsize=1, n_filters_scale=1, model_type="supervised"),
                            nepochs=16, batch_size=16)
    model = train(lines_scan, config)
    assert model.history["loss"][-1] < 0.7 * model.history["loss"][0]
    region = metrics.scanned_region(lines_scan.positions, lines_scan.N, lines_scan.object.shape)
    scores = metrics.evaluate(reconstruct(model, lines_scan).object, lines_scan.object, region=region)
    untrained = reconstruct(_untrained(lines_scan, config), lines_scan).object
    baseline = metrics.evaluate(untrained, lines_scan.object, region=region)
    print("supervised", scores["phase_ssim"], "untrained", baseline["phase_ssim"])
    assert scores["phase_ssim"] > baseline["phase_ssim"] + 0.05
    with pytest.raises(ValueError, match="return_diffraction|only available for PINN"):
        reconstruct(model, lines_scan, return_diffraction=True)
    with pytest.raises(ValueError, match="refine_steps: needs a PINN model"):
        reconstruct(model, lines_scan, refine_steps=2)


def test_streamed_sources_match_in_memory(tmp_path, lines_scan, trained_pinn):
    subset = lines_scan.subset(np.arange(300))
    h5 = tmp_path / "scan.h5"
    write_scan_hdf5(h5, subset.positions, subset.probe, np.array_split(subset.amplitudes, 7), obj=subset.object)
    npz = tmp_path / "scan.npz"
    save_scan_npz(subset, npz)
    grid = (lines_scan.object.shape, (0.0, 0.0))
    expected = reconstruct(trained_pinn, subset, grid=grid).object
    for source in (HDF5Source(h5), NpzMemmapSource(npz)):
        rng = np.random.default_rng(0)
        idx = rng.permutation(300)[:50]
        np.testing.assert_array_equal(source.read_amplitudes(idx), subset.amplitudes[idx])
        np.testing.assert_allclose(reconstruct(trained_pinn, source, grid=grid).object, expected, atol=1e-5)
    streamed = train(h5, _pinn_config(nepochs=1, validation_fraction=0))
    assert np.isfinite(streamed.history["loss"]).all()


def test_configuration_errors_are_clear(lines_scan):
    with pytest.raises(ConfigError, match="ModelConfig.N"):
        ModelConfig(N=48).validate()
    with pytest.raises(ConfigError, match="gridsize"):
        ModelConfig(N=64, gridsize=4).validate()
    with pytest.raises(ConfigError, match="decoder_block"):
        ModelConfig(N=64, decoder_block="deconv").validate()
    with pytest.raises(ConfigError, match="merge_border_weight"):
        ModelConfig(N=64, merge_border_weight=1.5).validate()
    with pytest.raises(ConfigError, match="nll_weight"):
        TrainingConfig(model=ModelConfig(N=64), nll_weight=-1).validate()
    with pytest.raises(ConfigError, match="n_nearest_neighbors"):
        TrainingConfig(model=ModelConfig(N=64, gridsize=3), n_nearest_neighbors=7).validate()
    with pytest.raises(ConfigError, match="expects 64 x 64 patterns"):
        train(lines_scan, TrainingConfig(model=ModelConfig(N=64)))


def test_realspace_loss_and_progress_reach_callback_and_logger(lines_scan, caplog):
    reports = []
    config = _pinn_config(nepochs=2, validation_fraction=0, realspace_mae_weight=1.0, mae_weight=0.5)
    with caplog.at_level("INFO", logger="ptychopinn"):
        model = train(lines_scan.subset(np.arange(96)), config, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [1, 2] and all(r.total_epochs == 2 for r in reports)
    assert all(r.model is model for r in reports)  # the model being trained, which can reconstruct mid-way
    assert {"loss", "diffraction_loss", "object_amplitude_loss", "object_phase_loss"} <= set(model.history)
    epoch_lines = [r.getMessage() for r in caplog.records if r.name == "ptychopinn" and r.getMessage().startswith("epoch ")]
    assert len(epoch_lines) == 2 and "epoch 2/2" in epoch_lines[-1] and "loss=" in epoch_lines[-1]
