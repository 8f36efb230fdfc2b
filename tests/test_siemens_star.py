"""The real Siemens-star scan: our reader, and a round trip through Ptychodus' own readers."""

from __future__ import annotations

import bz2
import io
from pathlib import Path

import numpy as np
import pytest
from ptychodus.api.io import load_diffraction_data, load_product

from ptychopinn_plugin.cli import main
from ptychopinn_plugin.siemens_star import load_siemens_star
from ptycho.config.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.datasource import InMemorySource
from ptycho.npz_io import load_scan_npz
from ptycho.scan import ScanData, ScanDataError
from ptycho.symmetry import DIHEDRAL_OPS, probe_symmetries
from ptycho.training import check_training_inputs


@pytest.fixture(scope="module")
def star(shared_data: Path) -> Path:
    """The Siemens-star file (the `shared_data` fixture skips when ../shared/data is absent)."""
    return shared_data / "siemens-star-small.npz.bz2"


@pytest.fixture(scope="module")
def raw(star: Path) -> dict[str, np.ndarray]:
    with bz2.open(star) as f, np.load(io.BytesIO(f.read())) as npz:
        return {key: npz[key] for key in ("data", "probe", "scan")}


@pytest.fixture(scope="module")
def star_scan(star: Path) -> ScanData:
    return load_siemens_star(star, margin_px=8)


@pytest.fixture(scope="module")
def folder(star: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("star") / "star"
    assert main(["convert", str(star), str(out)]) == 0
    return out


def test_reader_centres_patterns_and_shifts_positions(raw: dict[str, np.ndarray], star_scan: ScanData) -> None:
    scan = star_scan
    counts = np.fft.fftshift(raw["data"][0], axes=(-2, -1))
    assert (scan.n_patterns, scan.N) == (516, 128)
    np.testing.assert_array_equal(scan.amplitudes, np.sqrt(counts.astype(np.float64)).astype(np.float32))
    assert scan.amplitudes[:, 64, 64].mean() > 10 * scan.amplitudes[:, 0, 0].mean()  # zero frequency at the centre
    shift = scan.positions - raw["scan"][0][:, ::-1].astype(np.float64)  # file columns are (y, x)
    np.testing.assert_allclose(shift, shift[:1].repeat(516, axis=0), atol=1e-9)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    height, width = scan.object.shape
    assert scan.positions.min() >= 64 + 8 and scan.x.max() <= width - 1 - 72 and scan.y.max() <= height - 1 - 72
    np.testing.assert_array_equal(scan.object, np.ones((height, width), np.complex64))
    np.testing.assert_array_equal(scan.probe, raw["probe"][0, 0, 0, 0])
    assert scan.metadata.nphotons == pytest.approx(4.6e5, rel=0.02)


def test_batch_folder_round_trips_through_ptychodus(raw: dict[str, np.ndarray], folder: Path,
                                                    star_scan: ScanData) -> None:
    scan = star_scan
    product = load_product(folder / "product.h5")
    geometry = product.object_.get_geometry()
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_x_px(product.probe_positions), scan.x,
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_y_px(product.probe_positions), scan.y,
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(product.probes.get_array()[0, 0], raw["probe"][0, 0, 0, 0])
    diffraction = load_diffraction_data(folder / "diffraction.h5")
    np.testing.assert_array_equal(diffraction._patterns, np.fft.fftshift(raw["data"][0], axes=(-2, -1)))
    np.testing.assert_array_equal(diffraction.get_indexes(), product.probe_positions.get_indexes())


def test_folder_to_reference_npz(folder: Path, tmp_path: Path, star_scan: ScanData) -> None:
    assert main(["convert", str(folder), str(tmp_path / "star.npz")]) == 0
    back, scan = load_scan_npz(tmp_path / "star.npz"), star_scan
    np.testing.assert_array_equal(back.amplitudes, scan.amplitudes)
    np.testing.assert_allclose(back.positions, scan.positions, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(back.probe, scan.probe)


def test_corrupt_file_is_reported(star: Path, tmp_path: Path) -> None:
    bad = tmp_path / "star.npz.bz2"
    bad.write_bytes(star.read_bytes()[:5000])
    with pytest.raises(ScanDataError, match="star.npz.bz2"):
        load_siemens_star(bad)


def test_symmetry_augmentation_is_refused_for_the_measured_probe(star_scan: ScanData) -> None:
    """The measured probe has no mirror or quarter-turn symmetry, so turned patterns would not be exact."""
    assert probe_symmetries(star_scan.probe) == DIHEDRAL_OPS[:1]
    config = TrainingConfig(model=ModelConfig(N=0), symmetry_augmentation=True)
    with pytest.raises(ConfigError, match="symmetry_augmentation: .*siemens.*no mirror or 90-degree symmetry"):
        check_training_inputs(InMemorySource(star_scan), config)
