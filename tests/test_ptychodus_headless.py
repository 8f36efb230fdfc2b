"""Ptychodus 1.7 headless (`ModelCore.workflow_api`) with its built-in PtychoPINN library on our `ptycho`:
export training data, train, reconstruct, save the product; log forwarding; errors as one clear line.

Every train / reconstruct runs in a child process spawned by Ptychodus, as in the GUI."""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.io import load_product, save_diffraction_data
from ptychodus.model import ModelCore
from ptychodus.model.processing._subprocess_protocol import ChildError

from ptycho import metrics
from ptycho.bundle import BundleError, read_manifest
from ptycho.scan import ScanDataError
from ptychopinn_plugin.ptychodus_compat import scan_to_ptychodus, write_ptychodus_inputs

N = 32


class Records(logging.Handler):
    """Collects the records reaching a logger in this (parent) process."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.NOTSET) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture(scope="module")
def scan():
    from ptycho.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(N=N, n_images=256, step=4.0, nphotons=1e5, object_kind="grf", seed=1))


@pytest.fixture(scope="module")
def ptychopinn_log():
    """Records of the library logger `ptychopinn` in the parent; the root level INFO is what Ptychodus'
    command line sets by default (a child forwards records at the parent's root level)."""
    root, handler = logging.getLogger(), Records()
    level = root.level
    root.setLevel(logging.INFO)
    logging.getLogger("ptychopinn").addHandler(handler)
    yield handler
    logging.getLogger("ptychopinn").removeHandler(handler)
    root.setLevel(level)


def _model_core(epochs: int = 4) -> ModelCore:
    """A ModelCore with settings small enough for CI (the GUI's controls set the same parameters)."""
    model = ModelCore(log_level=logging.INFO)
    library = model.ptychopinn_reconstructor_library
    library.model_settings.n_filters_scale.set_value(1)
    library.training_settings.nepochs.set_value(epochs)
    library.training_settings.batch_size.set_value(4)
    return model


@pytest.fixture(scope="module")
def core(ptychopinn_log):
    with _model_core() as model:
        yield model


def _load(model: ModelCore, folder: Path):
    """Load folder/diffraction.h5 and folder/product.h5 as a Ptychodus user does."""
    api = model.workflow_api
    diffraction = api.load_assembled_diffraction_data(folder / "diffraction.h5")
    return diffraction, api.load_product(folder / "product.h5", diffraction=diffraction)


def _phase_scores(image: np.ndarray, scan) -> tuple[float, float]:
    """(phase MAE after removing the global phase offset, correlation of the phases) on the scanned region."""
    region = metrics.scanned_region(scan.positions, N, scan.object.shape)
    mae = metrics.evaluate(image, scan.object, region=region, register=False)["phase_mae"]
    phase, truth = np.angle(image[region]).ravel(), np.angle(scan.object[region]).ravel()
    return mae, float(np.corrcoef(phase, truth)[0, 1]) if np.ptp(phase) > 0 else 0.0


@pytest.fixture(scope="module")
def trained(core, scan, tmp_path_factory):
    """Per algorithm: export training data from a product holding the ground truth, train; the model
    directory and the records logged during training."""
    results = {}
    for algorithm in ("ptychopinn_pinn", "ptychopinn_supervised"):
        folder = tmp_path_factory.mktemp(algorithm)
        write_ptychodus_inputs(folder / "in", scan, counts_dtype=np.uint16)
        _, product = _load(core, folder / "in")
        train_dir = folder / "training"
        train_dir.mkdir()
        for name in ("train_data.npz", "test_data.npz"):
            product.export_training_data(train_dir / name, algorithm=algorithm)
        log_handler = core.processing_core.processing_api.task_monitor.get_log_handler()
        list(log_handler.messages())  # drain
        product.train_reconstructor_local(train_dir, train_dir, algorithm=algorithm, block=True)
        results[algorithm] = {"dir": train_dir, "gui_log": list(log_handler.messages())}
    return results


@pytest.mark.parametrize("algorithm", ["ptychopinn_pinn", "ptychopinn_supervised"])
def test_train_then_reconstruct_gets_closer_to_the_truth(core, scan, trained, algorithm, tmp_path):
    train_dir = trained[algorithm]["dir"]
    assert {"wts.h5.zip", "history.json", "loss.png", "reconstruction.npz"} <= {p.name for p in train_dir.iterdir()}
    manifest = read_manifest(train_dir / "wts.h5.zip")
    assert (manifest["N"], manifest["model"]["model_type"], len(manifest["history"]["loss"])) == (
        N, algorithm.split("_")[1], 4)

    ones = np.ones_like(scan.object)  # the initial object: no prior knowledge
    write_ptychodus_inputs(tmp_path, scan, object_array=ones, counts_dtype=np.uint16)
    _, handle = _load(core, tmp_path)
    output = handle.reconstruct_local(algorithm=algorithm, block=True)  # the model training left loaded

    initial, result = handle.get_product().object_, output.get_product().object_
    image = result.get_layer(0)
    assert image.shape == scan.object.shape and np.iscomplexobj(image)
    assert result.get_center() == initial.get_center()
    assert result.get_pixel_geometry() == initial.get_pixel_geometry()
    (mae_before, _), (mae_after, correlation) = _phase_scores(ones, scan), _phase_scores(image, scan)
    assert mae_after < 0.9 * mae_before and correlation > 0.5, (mae_before, mae_after, correlation)

    output.save_product(tmp_path / "result.h5", file_type="HDF5")
    np.testing.assert_array_equal(load_product(tmp_path / "result.h5").object_.get_layer(0), image)


def test_training_progress_reaches_the_processing_log(trained, ptychopinn_log):
    """Epoch lines logged by the child on `ptychopinn` arrive in the parent and in the GUI log pane."""
    epochs = [m for m in ptychopinn_log.messages(logging.INFO) if m.startswith("epoch ")]
    assert [m.split(":")[0] for m in epochs] == [f"epoch {i}/4" for i in range(1, 5)] * 2
    assert all("loss=" in m for m in epochs)
    pane = trained["ptychopinn_pinn"]["gui_log"]
    assert sum("[INFO] ptychopinn: epoch " in line for line in pane) == 4


# ------------------------------------------------------------------------------------------ errors
def _reconstruct_error(model: ModelCore, folder: Path, model_path: Path | None, algorithm: str = "ptychopinn_pinn"):
    """Load a model (if given), reconstruct the product in `folder`; return the exception raised."""
    _, product = _load(model, folder)
    if model_path is not None:
        model.processing_core.processing_api.load_model_from_file(model_path, algorithm=algorithm)
    with pytest.raises(Exception) as info:
        product.reconstruct_local(algorithm=algorithm, block=True)
    return info.value


def _check_child_error(error: BaseException, expected: type, pattern: str, log: Records) -> None:
    """The child's exception is `expected`, its message one line matching `pattern`; the traceback ends
    with that line, holds no TensorFlow frames, and the line was logged on `ptychopinn`."""
    assert isinstance(error, ChildError), repr(error)
    child = error.child_exception
    assert isinstance(child, expected), repr(child)
    message = str(child)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert error.child_traceback.strip().splitlines()[-1].endswith(f"{type(child).__name__}: {message}")
    assert "tensorflow" not in error.child_traceback and "keras" not in error.child_traceback
    assert f"{type(child).__name__}: {message}" in log.messages(logging.ERROR)


def test_no_model_loaded(scan, tmp_path, ptychopinn_log):
    write_ptychodus_inputs(tmp_path, scan)
    with _model_core() as model:
        error = _reconstruct_error(model, tmp_path, None)
    assert isinstance(error, RuntimeError) and str(error) == "Cannot reconstruct: no PtychoPINN model has been loaded."


def _replace_patterns(folder: Path, scan, counts: np.ndarray) -> None:
    """Write folder/diffraction.h5 with these counts (n, H, W) for the scan's patterns."""
    _, diffraction = scan_to_ptychodus(scan)
    save_diffraction_data(folder / "diffraction.h5", AssembledDiffractionData(
        diffraction.get_indexes(), counts, diffraction.get_pixel_geometry(), np.zeros(counts.shape[1:], bool)))


def test_non_square_patterns(core, scan, trained, tmp_path):
    write_ptychodus_inputs(tmp_path, scan)
    counts = np.zeros((scan.n_patterns, N, N + 8), np.float32)
    counts[:, :, :N] = np.square(scan.amplitudes)
    _replace_patterns(tmp_path, scan, counts)
    error = _reconstruct_error(core, tmp_path, trained["ptychopinn_pinn"]["dir"] / "wts.h5.zip")
    assert isinstance(error, ValueError) and str(error) == "Model requires square diffraction patterns!"


@pytest.fixture(scope="module")
def broken_models(trained, tmp_path_factory):
    """An empty model archive and a truncated wts.h5.zip."""
    folder = tmp_path_factory.mktemp("broken")
    with zipfile.ZipFile(folder / "empty.zip", "w"):
        pass
    (folder / "truncated").mkdir()
    good = (trained["ptychopinn_pinn"]["dir"] / "wts.h5.zip").read_bytes()
    (folder / "truncated" / "wts.h5.zip").write_bytes(good[: len(good) // 2])
    return {"empty": folder / "empty.zip", "truncated": folder / "truncated" / "wts.h5.zip"}


@pytest.mark.parametrize("case, pattern", [
    ("empty", r"ptychopinn-bundle-\w+: no model bundle 'wts.h5.zip' in this directory"),
    ("truncated", r"truncated/wts.h5.zip: not a model bundle \(corrupted, truncated or not a zip file"),
])
def test_broken_model(core, scan, broken_models, tmp_path, ptychopinn_log, case, pattern):
    write_ptychodus_inputs(tmp_path, scan)
    _check_child_error(_reconstruct_error(core, tmp_path, broken_models[case]), BundleError, pattern, ptychopinn_log)


def test_model_for_another_pattern_size(core, trained, tmp_path, ptychopinn_log):
    from ptycho.simulate import SimulationConfig, simulate

    write_ptychodus_inputs(tmp_path, simulate(SimulationConfig(N=64, n_images=9, step=8.0, nphotons=1e4, seed=2)))
    error = _reconstruct_error(core, tmp_path, trained["ptychopinn_pinn"]["dir"] / "wts.h5.zip")
    _check_child_error(error, ValueError, r"the model was trained on 32 x 32 diffraction patterns, but the data "
                       r"have 64 x 64 patterns", ptychopinn_log)


def test_model_for_another_gridsize(core, scan, trained, tmp_path, ptychopinn_log):
    write_ptychodus_inputs(tmp_path, scan)
    gridsize = core.ptychopinn_reconstructor_library.model_settings.gridsize
    gridsize.set_value(2)
    try:
        error = _reconstruct_error(core, tmp_path, trained["ptychopinn_pinn"]["dir"] / "wts.h5.zip")
    finally:
        gridsize.set_value(1)
    _check_child_error(error, ValueError, r"trained with gridsize 1, but the GridSize setting is 2; set GridSize to 1",
                       ptychopinn_log)


def test_nan_in_the_training_data(core, scan, tmp_path, ptychopinn_log):
    """Ptychodus itself refuses NaN in loaded diffraction data; a training NPZ with NaN reaches our child."""
    write_ptychodus_inputs(tmp_path, scan)
    _, product = _load(core, tmp_path)
    for name in ("train_data.npz", "test_data.npz"):
        product.export_training_data(tmp_path / name, algorithm="ptychopinn_pinn")
    with np.load(tmp_path / "test_data.npz") as exported:
        arrays = dict(exported)
    arrays["diff3d"] = arrays["diff3d"].astype(np.float32)
    arrays["diff3d"][3, 5, 7] = np.nan
    np.savez(tmp_path / "test_data.npz", **arrays)
    with pytest.raises(ChildError) as info:
        product.train_reconstructor_local(tmp_path, tmp_path, algorithm="ptychopinn_pinn", block=True)
    _check_child_error(info.value, ScanDataError, r"test_data.npz: 'diff3d': expected finite counts", ptychopinn_log)
    assert not (tmp_path / "wts.h5.zip").exists()


def test_positions_outside_the_object(core, scan, trained, tmp_path, ptychopinn_log):
    write_ptychodus_inputs(tmp_path, scan, object_array=np.ones((40, 40), np.complex64))
    error = _reconstruct_error(core, tmp_path, trained["ptychopinn_pinn"]["dir"] / "wts.h5.zip")
    _check_child_error(error, ScanDataError, r"^Ptychodus input: 'xcoords/ycoords': expected positions inside the "
                       r"object grid \(x in \[0, 39\], y in \[0, 39\]\), got \d+ outside", ptychopinn_log)
