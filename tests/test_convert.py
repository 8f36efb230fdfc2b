"""ScanData <-> Ptychodus conversions, `load_scan`, reconstruction export and the `convert` CLI."""

from __future__ import annotations

import configparser
import dataclasses
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from ptychodus.api.constants import energy_eV_to_wavelength_m
from ptychodus.api.io import load_diffraction_data, load_product, save_ptychopinn_training_data
from ptychodus.api.reconstruct import ReconstructInput

import ptychopinn_plugin.batch_folder as batch_folder
from ptychopinn_plugin.cli import main
from ptychopinn_plugin.convert import (
    Geometry, GeometryDefaults, load_scan, product_to_scan, resolve_geometry, scan_to_diffraction,
    scan_to_product, write_reconstruction_product,
)
from ptychopinn_plugin.diffraction_hdf5 import DiffractionData
from ptychopinn_plugin.product import ProductData, ProductMetadata
from ptychopinn_plugin.product_hdf5 import read_product
from ptycho.npz_io import load_scan_npz, save_scan_npz
from ptycho.scan import ScanData, ScanMetadata

N = 16


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.uniform(0.5, 1.0, shape) * np.exp(1j * rng.uniform(-1, 1, shape))).astype(np.complex64)


def make_scan(seed: int = 0, *, n: int = 12, with_object: bool = True) -> ScanData:
    """Integer Poisson counts (so counts survive amplitude -> counts exactly), object 40 x 48."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20.0, size=(n, N, N))
    positions = np.stack([rng.uniform(10, 38, n), rng.uniform(10, 30, n)], axis=1)
    return ScanData(amplitudes=np.sqrt(counts).astype(np.float32), positions=positions,
                    probe=_complex(rng, (N, N)), object=_complex(rng, (40, 48)) if with_object else None,
                    source="<test scan>")


def make_product_and_diffraction(seed: int = 0, *, n: int = 10) -> tuple[ProductData, DiffractionData]:
    """A single-mode, single-layer product off-centre, non-square pixels, shuffled indexes; patterns
    stored in a different order than the positions."""
    rng = np.random.default_rng(seed)
    width, height, dx, dy = 44, 36, 2e-8, 3e-8
    indexes = rng.permutation(n) + 100
    x_px, y_px = rng.uniform(9, width - 10, n), rng.uniform(9, height - 10, n)
    product = ProductData(
        metadata=ProductMetadata(detector_distance_m=1.5, photon_energy_eV=9000.0, name="sample", comments="c",
                                 probe_photon_count=1e9, exposure_time_s=0.1, mass_attenuation_m2_per_kg=0.2,
                                 tomography_angle_deg=30.0, tilt_angle_deg=1.0, polarization="right_circular",
                                 far_field=True),
        position_indexes=indexes,
        position_x_m=5e-7 + (x_px - (width - 1) / 2) * dx,
        position_y_m=-2e-7 + (y_px - (height - 1) / 2) * dy,
        probe=_complex(rng, (1, 1, N, N)), probe_pixel_width_m=dx, probe_pixel_height_m=dy,
        object=_complex(rng, (1, height, width)), object_center_x_m=5e-7, object_center_y_m=-2e-7,
        object_pixel_width_m=dx, object_pixel_height_m=dy,
    )
    order = rng.permutation(n)
    diffraction = DiffractionData(counts=rng.poisson(30.0, (n, N, N)).astype(np.float32)[order],
                                  indexes=indexes[order], bad_pixels=np.zeros((N, N), bool),
                                  detector_pixel_width_m=75e-6, detector_pixel_height_m=75e-6)
    return product, diffraction


# ------------------------------------------------------------------------------ geometry
def test_resolve_geometry_defaults_and_consistency() -> None:
    geometry = resolve_geometry(ScanMetadata(), 64)
    wavelength = energy_eV_to_wavelength_m(10_000.0)
    assert geometry == Geometry(10_000.0, 2.0, 75e-6, pytest.approx(wavelength * 2.0 / (64 * 75e-6), rel=1e-12))
    assert geometry.object_pixel_size_m == pytest.approx(5.166e-8, rel=1e-3)
    known_object = resolve_geometry(ScanMetadata(object_pixel_size_m=1e-8), 64, GeometryDefaults(8000.0, 1.0, 1e-4))
    assert known_object.detector_pixel_size_m == pytest.approx(energy_eV_to_wavelength_m(8000.0) / (64 * 1e-8))
    assert known_object.object_pixel_size_m == 1e-8


# ------------------------------------------------------------------------------ conversions
def test_scan_to_ptychodus_and_back() -> None:
    scan = make_scan()
    product, diffraction = scan_to_product(scan), scan_to_diffraction(scan)
    assert product.object_geometry.center_x_m == 0.0 and product.probe.shape == (1, 1, N, N)
    np.testing.assert_array_equal(diffraction.counts, np.rint(scan.amplitudes.astype(np.float64) ** 2))
    back = product_to_scan(product, diffraction)
    np.testing.assert_array_equal(back.amplitudes, scan.amplitudes)
    np.testing.assert_allclose(back.positions, scan.positions, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(back.probe, scan.probe)
    np.testing.assert_array_equal(back.object, scan.object)
    assert back.metadata.object_origin_x_m == pytest.approx(-23.5 * product.object_pixel_width_m, rel=1e-12)
    # Metadata recorded on the first trip fixes the geometry: a second trip reproduces the product.
    again = scan_to_product(back)
    assert again.metadata == product.metadata
    np.testing.assert_allclose(again.position_x_m, product.position_x_m, rtol=0, atol=1e-20)
    assert again.object_center_x_m == pytest.approx(product.object_center_x_m, abs=1e-20)


def test_product_to_scan_to_product_is_exact() -> None:
    product, diffraction = make_product_and_diffraction()
    scan = product_to_scan(product, diffraction)
    # Patterns are paired with positions by index, not by row.
    for row, index in enumerate(product.position_indexes):
        expected = diffraction.counts[list(diffraction.indexes).index(index)]
        np.testing.assert_allclose(scan.amplitudes[row].astype(np.float64) ** 2, expected, rtol=1e-6)
    back = scan_to_product(scan, position_indexes=product.position_indexes)
    assert back.metadata == product.metadata
    for key in ("object_pixel_width_m", "object_pixel_height_m", "probe_pixel_width_m", "probe_pixel_height_m"):
        assert getattr(back, key) == getattr(product, key), key
    assert back.object_center_x_m == pytest.approx(product.object_center_x_m, rel=1e-14)
    assert back.object_center_y_m == pytest.approx(product.object_center_y_m, rel=1e-14)
    np.testing.assert_array_equal(back.position_indexes, product.position_indexes)
    np.testing.assert_allclose(back.position_x_m, product.position_x_m, rtol=0, atol=1e-12 * 2e-8)
    np.testing.assert_allclose(back.position_y_m, product.position_y_m, rtol=0, atol=1e-12 * 3e-8)
    np.testing.assert_array_equal(back.probe, product.probe)
    np.testing.assert_array_equal(back.object, product.object)


def test_missing_pattern_and_bad_pixels() -> None:
    product, diffraction = make_product_and_diffraction()
    short = dataclasses.replace(diffraction, counts=diffraction.counts[1:], indexes=diffraction.indexes[1:])
    with pytest.raises(ValueError, match=f"index {diffraction.indexes[0]}"):
        product_to_scan(product, short)
    bad = np.zeros((N, N), bool)
    bad[5, 6] = True
    counts = diffraction.counts.copy()
    counts[:, 5, 6] = 1e6  # a hot pixel: inpainted from its neighbours
    scan = product_to_scan(product, dataclasses.replace(diffraction, counts=counts, bad_pixels=bad))
    assert float(scan.amplitudes[:, 5, 6].max()) ** 2 < 100


def test_scan_without_object_gets_covering_grid() -> None:
    scan = make_scan(with_object=False)
    scan.positions -= 30.0  # negative coordinates: no object grid yet
    product = scan_to_product(scan, margin_px=4)
    np.testing.assert_array_equal(product.object, np.ones_like(product.object))
    shift = product.positions_px() - scan.positions
    np.testing.assert_allclose(shift, shift[:1].repeat(len(shift), axis=0), atol=1e-9)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)  # whole pixels
    px = product.positions_px()
    height, width = product.object.shape[1:]
    assert px.min() >= N / 2 + 4 - 1e-9 and px[:, 0].max() <= width - 1 - N / 2 - 4 + 1e-9
    assert px[:, 1].max() <= height - 1 - N / 2 - 4 + 1e-9 and px.min() < N / 2 + 4 + 1
    back = product_to_scan(product, scan_to_diffraction(scan))
    np.testing.assert_allclose(back.positions, scan.positions + shift[0], atol=1e-9)
    # With a known origin, metres stay those of the scan's own pixel frame: x_m = origin + x * pixel.
    scan.metadata = ScanMetadata(object_pixel_size_m=1e-8, object_origin_x_m=3e-6, object_origin_y_m=-1e-6)
    placed = scan_to_product(scan)
    np.testing.assert_allclose(placed.position_x_m, 3e-6 + scan.x * 1e-8, rtol=0, atol=1e-18)
    np.testing.assert_allclose(placed.position_y_m, -1e-6 + scan.y * 1e-8, rtol=0, atol=1e-18)


def test_reconstruction_product_from_input_product(tmp_path: Path) -> None:
    product, diffraction = make_product_and_diffraction()
    scan = product_to_scan(product, diffraction)
    reconstruction = scan.object[:30, :40] * 2  # same pixel grid, different extent
    path = write_reconstruction_product(tmp_path / "out.h5", scan, reconstruction,
                                        losses=[(1, 0.5), (2, 0.25)], name="pinn", input_product=product)
    out = read_product(path)
    assert out.metadata == dataclasses.replace(product.metadata, name="pinn")
    np.testing.assert_array_equal(out.loss_epochs, [1, 2])
    np.testing.assert_array_equal(out.loss_values, [0.5, 0.25])
    np.testing.assert_array_equal(out.object[0], reconstruction)
    for key in ("position_indexes", "position_x_m", "position_y_m", "probe"):
        np.testing.assert_array_equal(getattr(out, key), getattr(product, key), err_msg=key)
    np.testing.assert_allclose(out.positions_px(), scan.positions, rtol=0, atol=1e-9)
    theirs = load_product(path)
    assert [(int(v.epoch), float(v.value)) for v in theirs.losses] == [(1, 0.5), (2, 0.25)]
    x_px = theirs.object_.get_geometry().map_probe_positions_to_object_x_px(theirs.probe_positions)
    np.testing.assert_allclose(x_px, scan.x, rtol=0, atol=1e-9)

    shifted = dataclasses.replace(scan, metadata=dataclasses.replace(scan.metadata, object_origin_x_m=0.0))
    with pytest.raises(ValueError, match="not the input product's"):
        write_reconstruction_product(tmp_path / "bad.h5", shifted, reconstruction, input_product=product)
    assert not (tmp_path / "bad.h5").exists()


def test_reconstruction_product_from_scan(tmp_path: Path) -> None:
    scan = make_scan()
    reconstruction = scan.object * 0.5
    out = read_product(write_reconstruction_product(tmp_path / "out.h5", scan, reconstruction, losses=[(3, 0.1)]))
    assert out.metadata.name == "ptychopinn"
    np.testing.assert_array_equal(out.object[0], reconstruction)
    np.testing.assert_allclose(out.positions_px(), scan.positions, rtol=0, atol=1e-9)
    assert (out.loss_epochs.tolist(), out.loss_values.tolist()) == ([3], [0.1])


# ------------------------------------------------------------------------------ load_scan
def test_load_scan_reads_every_input_kind(tmp_path: Path) -> None:
    scan = make_scan()
    save_scan_npz(scan, tmp_path / "ref.npz")
    from_npz = load_scan(tmp_path / "ref.npz")
    np.testing.assert_array_equal(from_npz.amplitudes, scan.amplitudes)

    batch_folder.write_batch_folder(tmp_path / "folder", scan_to_product(scan), scan_to_diffraction(scan))
    for source in (tmp_path / "folder", tmp_path / "folder" / "product.h5"):
        loaded = load_scan(source)
        np.testing.assert_array_equal(loaded.amplitudes, scan.amplitudes)
        np.testing.assert_allclose(loaded.positions, scan.positions, atol=1e-9)

    # Ptychodus' exported training data (counts, (modes, N, N) probe, bad_pixels).
    theirs = load_product(tmp_path / "folder" / "product.h5")
    counts = load_diffraction_data(tmp_path / "folder" / "diffraction.h5")._patterns
    save_ptychopinn_training_data(tmp_path / "train.npz", ReconstructInput(counts, np.zeros((N, N), bool), theirs))
    exported = load_scan(tmp_path / "train.npz")
    np.testing.assert_array_equal(exported.amplitudes, scan.amplitudes)
    np.testing.assert_allclose(exported.positions, scan.positions, atol=1e-9)
    np.testing.assert_array_equal(exported.probe, scan.probe)

    with pytest.raises(ValueError, match="diffraction data"):
        load_scan(tmp_path / "folder" / "diffraction.h5")
    (tmp_path / "scan.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported input"):
        load_scan(tmp_path / "scan.txt")
    with pytest.raises(FileNotFoundError):
        load_scan(tmp_path / "absent.npz")


# ------------------------------------------------------------------------------ CLI
def test_cli_npz_to_batch_folder_and_back(tmp_path: Path) -> None:
    scan = make_scan()
    save_scan_npz(scan, tmp_path / "in.npz")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as archive:
        archive.writestr("wts.h5.zip", b"weights")
    folder = tmp_path / "batch"
    assert main(["convert", str(tmp_path / "in.npz"), str(folder), "--name", "demo", "--energy-ev", "8000",
                 "--model", str(tmp_path / "bundle.zip")]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["diffraction.h5", "model.zip", "product.h5", "settings.ini"]
    assert (folder / "model.zip").read_bytes() == (tmp_path / "bundle.zip").read_bytes()
    settings = configparser.ConfigParser()
    settings.read(folder / "settings.ini")
    assert settings["Processing"]["Algorithm"] == "ptychopinn_pinn"
    assert settings["PtychoPINNModel"]["GridSize"] == "1"
    assert {"PtychoPINNTraining", "PtychoPINNInference"} <= set(settings.sections())

    # Ptychodus' own readers see our positions, probe and counts.
    theirs = load_product(folder / "product.h5")
    assert theirs.metadata.name == "demo" and theirs.metadata.photon_energy_eV == 8000.0
    geometry = theirs.object_.get_geometry()
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_x_px(theirs.probe_positions), scan.x, atol=1e-9)
    np.testing.assert_allclose(geometry.map_probe_positions_to_object_y_px(theirs.probe_positions), scan.y, atol=1e-9)
    np.testing.assert_array_equal(theirs.probes.get_array()[0, 0], scan.probe)
    patterns = load_diffraction_data(folder / "diffraction.h5")._patterns
    np.testing.assert_array_equal(np.sqrt(patterns.astype(np.float64)).astype(np.float32), scan.amplitudes)

    assert main(["convert", str(folder), str(tmp_path / "out.npz")]) == 0
    back = load_scan_npz(tmp_path / "out.npz")
    np.testing.assert_array_equal(back.amplitudes, scan.amplitudes)
    np.testing.assert_allclose(back.positions, scan.positions, atol=1e-9)
    np.testing.assert_array_equal(back.object, scan.object)
    assert back.metadata.name == "demo" and back.metadata.photon_energy_eV == 8000.0

    assert main(["convert", str(tmp_path / "out.npz"), str(tmp_path / "p.h5")]) == 0
    np.testing.assert_array_equal(read_product(tmp_path / "p.h5").object[0], scan.object)


def test_cli_updates_existing_folder_and_keeps_other_files(tmp_path: Path) -> None:
    save_scan_npz(make_scan(1), tmp_path / "in.npz")
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "product.h5").write_text("old")
    assert main(["convert", str(tmp_path / "in.npz"), str(folder)]) == 0
    assert (folder / "notes.txt").read_text() == "mine"
    assert read_product(folder / "product.h5").n_positions == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch", "in.npz"]


def _truncated_folder(tmp_path: Path) -> list[str]:
    batch_folder.write_batch_folder(tmp_path / "in", scan_to_product(make_scan()), scan_to_diffraction(make_scan()))
    product = tmp_path / "in" / "product.h5"
    product.write_bytes(product.read_bytes()[:1000])
    return [str(tmp_path / "in"), str(tmp_path / "out.npz")]


def _garbage_npz(tmp_path: Path) -> list[str]:
    (tmp_path / "in.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return [str(tmp_path / "in.npz"), str(tmp_path / "out")]


def _unwritable_output(tmp_path: Path) -> list[str]:
    save_scan_npz(make_scan(), tmp_path / "in.npz")
    (tmp_path / "blocker").write_text("a file, not a folder")
    return [str(tmp_path / "in.npz"), str(tmp_path / "blocker" / "out.h5")]


def _unsupported_output(tmp_path: Path) -> list[str]:
    save_scan_npz(make_scan(), tmp_path / "in.npz")
    return [str(tmp_path / "in.npz"), str(tmp_path / "out.txt")]


def _model_not_zip(tmp_path: Path) -> list[str]:
    save_scan_npz(make_scan(), tmp_path / "in.npz")
    (tmp_path / "model.zip").write_text("not a zip")
    return [str(tmp_path / "in.npz"), str(tmp_path / "out"), "--model", str(tmp_path / "model.zip")]


def _bad_energy(tmp_path: Path) -> list[str]:
    save_scan_npz(make_scan(), tmp_path / "in.npz")
    return [str(tmp_path / "in.npz"), str(tmp_path / "out"), "--energy-ev", "-1"]


@pytest.mark.parametrize("setup", [_truncated_folder, _garbage_npz, _unwritable_output, _unsupported_output,
                                   _model_not_zip, _bad_energy])
def test_cli_failures_exit_2_with_one_line_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          setup) -> None:
    args = setup(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["convert", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ptychopinn: error: ")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_interrupted_folder_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_scan_npz(make_scan(), tmp_path / "in.npz")
    existing = tmp_path / "existing"
    main(["convert", str(tmp_path / "in.npz"), str(existing)])
    snapshot = {p.name: p.read_bytes() for p in existing.iterdir()}

    def crash(path, data, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("interrupted (simulated)")

    monkeypatch.setattr(batch_folder, "write_diffraction", crash)
    for target in (tmp_path / "new", existing):
        with pytest.raises(OSError, match="simulated"):
            batch_folder.write_batch_folder(target, scan_to_product(make_scan(2)), scan_to_diffraction(make_scan(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in.npz"]
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == snapshot


def test_product_with_probe_modes_keeps_first_mode(tmp_path: Path) -> None:
    """A product with two probe modes converts with a warning, keeping the first mode."""
    product, diffraction = make_product_and_diffraction()
    modes = np.concatenate([product.probe, product.probe * 0.1], axis=1)
    folder = tmp_path / "modes"
    batch_folder.write_batch_folder(folder, dataclasses.replace(product, probe=modes), diffraction)
    with h5py.File(folder / "product.h5") as h5:
        assert h5["probe"].shape == (1, 2, N, N)
    with pytest.warns(UserWarning, match="first mode"):
        scan = load_scan(folder)
    np.testing.assert_array_equal(scan.probe, product.probe[0, 0])
