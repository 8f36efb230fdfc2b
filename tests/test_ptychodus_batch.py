"""Ptychodus 1.7 batch mode with the built-in PtychoPINN library on our `ptycho`: the real command line
`python -m ptychodus -b train|reconstruct -i IN -o OUT` in a subprocess.

Batch folders (Ptychodus' StandardFileLayout): settings.ini, diffraction.h5, product.h5; `train` also reads
IN/train_data.npz and IN/test_data.npz (written by "Export Training Data") and writes the model to
OUT/wts.h5.zip; `reconstruct` loads IN/model.zip and writes OUT/product.000000.h5 (one file per result)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ptychodus.api.io import load_product, save_ptychopinn_training_data
from ptychodus.api.reconstruct import prepare_reconstruct_input

from ptycho.bundle import read_manifest
from ptychopinn_plugin.ptychodus_compat import scan_to_ptychodus, write_ptychodus_inputs

N = 32
SETTINGS = """[Processing]
Algorithm = ptychopinn_pinn

[PtychoPINNModel]
NumFiltersScale = 1

[PtychoPINNTraining]
NumEpochs = 2
BatchSize = 16
"""


def _ptychodus(action: str, input_dir: Path, output_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptychodus", "-b", action, "-i", str(input_dir), "-o", str(output_dir)],
                          capture_output=True, text=True, timeout=600, check=False)


def _batch_folder(folder: Path, scan, object_array: np.ndarray | None = None) -> Path:
    write_ptychodus_inputs(folder, scan, object_array=object_array, counts_dtype=np.uint16)
    (folder / "settings.ini").write_text(SETTINGS)
    return folder


@pytest.fixture(scope="module")
def scan():
    from ptycho.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(N=N, n_images=128, step=4.0, nphotons=1e5, object_kind="grf", seed=4))


@pytest.fixture(scope="module")
def trained(scan, tmp_path_factory):
    """`ptychodus -b train` on a folder with exported training data: (process, output folder)."""
    folder = _batch_folder(tmp_path_factory.mktemp("train_in"), scan)
    product, diffraction = scan_to_ptychodus(scan, counts_dtype=np.uint16)
    for name in ("train_data.npz", "test_data.npz"):  # what the GUI's "Export Training Data..." writes
        save_ptychopinn_training_data(folder / name, prepare_reconstruct_input(diffraction, product))
    output = tmp_path_factory.mktemp("train_out")
    return _ptychodus("train", folder, output), output


def test_batch_train_writes_a_model(trained):
    process, output = trained
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    manifest = read_manifest(output / "wts.h5.zip")
    assert (manifest["N"], manifest["model"]["model_type"], manifest["model"]["n_filters_scale"]) == (N, "pinn", 1)
    history = json.loads((output / "history.json").read_text())["history"]
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert (output / "reconstruction.npz").is_file() and (output / "loss.png").is_file()
    assert "ptychopinn: epoch 2/2: loss=" in process.stdout  # the child's progress reaches the console log


def test_batch_reconstruct_writes_the_product(scan, trained, tmp_path):
    ones = np.ones_like(scan.object)
    folder = _batch_folder(tmp_path / "in", scan, object_array=ones)
    shutil.copyfile(trained[1] / "wts.h5.zip", folder / "model.zip")  # what Ptychodus' save_model writes
    process = _ptychodus("reconstruct", folder, tmp_path / "out")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["product.000000.h5"]
    initial, result = load_product(folder / "product.h5"), load_product(tmp_path / "out" / "product.000000.h5")
    image = result.object_.get_layer(0)
    assert image.shape == scan.object.shape
    assert result.object_.get_center() == initial.object_.get_center()
    assert result.object_.get_pixel_geometry() == initial.object_.get_pixel_geometry()
    assert np.all(np.isfinite(image)) and np.abs(image - ones).mean() > 0.01
    np.testing.assert_allclose(result.probe_positions.get_coordinates_x_m(),
                               initial.probe_positions.get_coordinates_x_m())


def test_batch_reconstruct_without_a_model_fails_clearly(scan, tmp_path):
    process = _ptychodus("reconstruct", _batch_folder(tmp_path / "in", scan), tmp_path / "out")
    assert process.returncode == 1
    assert "Reconstruction failed: RuntimeError: Cannot reconstruct: no PtychoPINN model has been loaded." in process.stdout
