"""Product and diffraction HDF5 files: exact round trips, Ptychodus compatibility, bad input, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.io import load_diffraction_data, load_product, save_diffraction_data, save_product
from ptychodus.api.object import ObjectGeometry as PtychodusObjectGeometry, ObjectPosition
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import LossValue, Product

import ptychopinn_plugin.product_hdf5 as product_hdf5
from ptychopinn_plugin.diffraction_hdf5 import DiffractionData, read_diffraction, write_diffraction
from ptychopinn_plugin.product import ObjectGeometry, ProductData, ProductMetadata, PtychodusFormatError
from ptychopinn_plugin.product_hdf5 import read_product, write_product
from ptychopinn_plugin.ptychodus_compat import to_ptychodus_product


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def make_product(seed: int = 0, *, n: int = 7) -> ProductData:
    """A product using every optional field (2 layers, 2 x 3 probe modes, OPR weights, photon counts)."""
    rng = np.random.default_rng(seed)
    return ProductData(
        metadata=ProductMetadata(
            detector_distance_m=1.75, photon_energy_eV=8800.0, name="sample-7", comments="a comment",
            probe_photon_count=3.5e8, exposure_time_s=0.02, mass_attenuation_m2_per_kg=0.125,
            tomography_angle_deg=12.5, focus_object_distance_m=1e-3, tilt_angle_deg=-2.0,
            polarization="left_circular", far_field=False,
        ),
        position_indexes=rng.permutation(n).astype(np.int64) + 10,
        position_x_m=rng.normal(scale=1e-6, size=n),
        position_y_m=rng.normal(scale=1e-6, size=n),
        probe_photon_counts=rng.uniform(1e5, 2e5, size=n),
        probe=_complex(rng, (2, 3, 8, 8)),
        probe_pixel_width_m=2e-8,
        probe_pixel_height_m=2.5e-8,
        opr_weights=rng.normal(size=(n, 2)),
        object=_complex(rng, (2, 20, 24)),
        object_center_x_m=1.5e-7,
        object_center_y_m=-3e-7,
        object_pixel_width_m=2e-8,
        object_pixel_height_m=2.5e-8,
        object_layer_spacing_m=np.array([4e-6]),
        loss_epochs=np.array([0, 1, 2], dtype=np.int64),
        loss_values=np.array([1.0, 0.5, 0.25]),
    )


def assert_products_equal(a: ProductData, b: ProductData) -> None:
    assert a.metadata == b.metadata
    for f in dataclasses.fields(ProductData):
        if f.name in ("metadata", "source"):
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            assert va.dtype == vb.dtype, f.name
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
        else:
            assert va == vb, f.name



def assert_ptychodus_products_equal(a: Product, b: Product) -> None:
    assert a.metadata == b.metadata
    for getter in ("get_indexes", "get_coordinates_x_m", "get_coordinates_y_m", "get_probe_photon_counts"):
        np.testing.assert_array_equal(getattr(a.probe_positions, getter)(), getattr(b.probe_positions, getter)())
    np.testing.assert_array_equal(a.probes.get_array(), b.probes.get_array())
    assert a.probes.get_array().dtype == b.probes.get_array().dtype
    np.testing.assert_array_equal(a.probes.get_opr_weights_or_none(), b.probes.get_opr_weights_or_none())
    assert a.probes.get_pixel_geometry() == b.probes.get_pixel_geometry()
    np.testing.assert_array_equal(a.object_.get_array(), b.object_.get_array())
    assert a.object_.get_geometry() == b.object_.get_geometry()
    np.testing.assert_array_equal(a.object_.layer_spacing_m, b.object_.layer_spacing_m)
    assert [(int(x.epoch), float(x.value)) for x in a.losses] == [(int(x.epoch), float(x.value)) for x in b.losses]


def h5_layout(path: Path) -> tuple[dict, dict]:
    """{dataset: (dtype, shape, {attr: (type, value)})}, {root attr: (type, value)}."""
    def attrs(node) -> dict:
        return {k: (type(v), v.tolist() if isinstance(v, np.ndarray) else v) for k, v in node.attrs.items()}
    with h5py.File(path, "r") as h5:
        return {k: (v.dtype, v.shape, attrs(v)) for k, v in h5.items()}, attrs(h5)


# ------------------------------------------------------------------------------ round trips
def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    product = make_product()
    write_product(tmp_path / "p.h5", product)
    back = read_product(tmp_path / "p.h5")
    assert_products_equal(product, back)
    assert back.source == str(tmp_path / "p.h5")


def test_complex128_and_empty_history_round_trip(tmp_path: Path) -> None:
    product = dataclasses.replace(make_product(1), object=make_product(1).object.astype(np.complex128),
                                  loss_epochs=np.zeros(0, np.int64), loss_values=np.zeros(0),
                                  probe_photon_counts=None, opr_weights=None)
    write_product(tmp_path / "p.h5", product)
    assert_products_equal(product, read_product(tmp_path / "p.h5"))


@pytest.mark.parametrize("losses", [[], [LossValue(1, 0.75), LossValue(5, 0.125)]])
def test_ptychodus_to_ours_to_ptychodus_is_exact(tmp_path: Path, losses: list[LossValue]) -> None:
    original = dataclasses.replace(to_ptychodus_product(make_product(2)), losses=losses)
    save_product(tmp_path / "theirs.h5", original)
    ours = read_product(tmp_path / "theirs.h5")
    write_product(tmp_path / "ours.h5", ours)
    assert_ptychodus_products_equal(original, load_product(tmp_path / "ours.h5"))
    # Same layout as Ptychodus' own writer (dtypes, shapes, attributes), plus the two legacy attributes.
    theirs_datasets, theirs_attrs = h5_layout(tmp_path / "theirs.h5")
    ours_datasets, ours_attrs = h5_layout(tmp_path / "ours.h5")
    assert ours_datasets == theirs_datasets
    legacy = ("probe_energy_eV", "mass_attenuation_m2_kg")
    assert {k: v for k, v in ours_attrs.items() if k not in legacy} == theirs_attrs
    assert ours_attrs["probe_energy_eV"][1] == 8800.0 and ours_attrs["mass_attenuation_m2_kg"][1] == 0.125


def test_empty_loss_history_is_float64_empty_like_ptychodus(tmp_path: Path) -> None:
    product = dataclasses.replace(make_product(), loss_epochs=np.zeros(0, np.int64), loss_values=np.zeros(0))
    write_product(tmp_path / "p.h5", product)
    with h5py.File(tmp_path / "p.h5") as h5:
        assert (h5["loss_epochs"].dtype, h5["loss_epochs"].shape) == (np.float64, (0,))
        assert (h5["loss_values"].dtype, h5["loss_values"].shape) == (np.float64, (0,))
    assert read_product(tmp_path / "p.h5").loss_epochs.dtype == np.int64


def test_reads_legacy_attribute_names(tmp_path: Path) -> None:
    write_product(tmp_path / "p.h5", make_product())
    with h5py.File(tmp_path / "p.h5", "r+") as h5:
        del h5.attrs["photon_energy_eV"], h5.attrs["mass_attenuation_m2_per_kg"]
        h5.attrs["probe_energy_eV"], h5.attrs["mass_attenuation_m2_kg"] = 7000.0, 0.5
    md = read_product(tmp_path / "p.h5").metadata
    assert (md.photon_energy_eV, md.mass_attenuation_m2_per_kg) == (7000.0, 0.5)


def test_geometry_matches_ptychodus_convention() -> None:
    ours = ObjectGeometry(width_px=37, height_px=20, pixel_width_m=3e-8, pixel_height_m=4e-8,
                          center_x_m=2e-7, center_y_m=-1e-7)
    theirs = PtychodusObjectGeometry(37, 20, 3e-8, 4e-8, 2e-7, -1e-7)
    rng = np.random.default_rng(3)
    x_m, y_m = rng.normal(scale=5e-7, size=(2, 50))
    positions = ProbePositionSequence([ProbePosition(i, x, y) for i, (x, y) in enumerate(zip(x_m, y_m))])
    x_px, y_px = ours.to_pixels(x_m, y_m)
    np.testing.assert_allclose(x_px, theirs.map_probe_positions_to_object_x_px(positions), rtol=0, atol=1e-12)
    np.testing.assert_allclose(y_px, theirs.map_probe_positions_to_object_y_px(positions), rtol=0, atol=1e-12)
    expected = [theirs.map_coordinates_object_to_probe(ObjectPosition(0, x, y)) for x, y in zip(x_px, y_px)]
    back_x, back_y = ours.to_metres(x_px, y_px)
    np.testing.assert_allclose(back_x, [p.x_m for p in expected], rtol=0, atol=1e-20)
    np.testing.assert_allclose(back_y, [p.y_m for p in expected], rtol=0, atol=1e-20)
    # Pixel (0, 0) lies at the origin; the centre pixel (W-1)/2 at the centre.
    assert ours.to_metres(0.0, 0.0) == pytest.approx((ours.origin_x_m, ours.origin_y_m), abs=1e-22)
    assert ours.origin_x_m == pytest.approx(2e-7 - 18 * 3e-8, abs=1e-22)
    assert ours.to_pixels(2e-7, -1e-7) == pytest.approx((18.0, 9.5))


# ------------------------------------------------------------------------------ bad input
def _edit(path: Path, edit) -> None:
    with h5py.File(path, "r+") as h5:
        edit(h5)


def _replace(key: str, value: np.ndarray):
    def edit(h5: h5py.File) -> None:
        attrs = dict(h5[key].attrs)
        del h5[key]
        h5.create_dataset(key, data=value).attrs.update(attrs)
    return edit


BAD_PRODUCTS = {
    "missing dataset": ("object", lambda h5: h5.__delitem__("object")),
    "missing attribute": ("photon_energy_eV",
                          lambda h5: [h5.attrs.__delitem__(k) for k in ("photon_energy_eV", "probe_energy_eV")]),
    "missing object attribute": ("center_x_m", lambda h5: h5["object"].attrs.__delitem__("center_x_m")),
    "wrong rank": ("probe_position_x_m", _replace("probe_position_x_m", np.zeros((7, 2)))),
    "wrong dtype": ("object", _replace("object", np.ones((2, 20, 24)))),
    "float indexes": ("probe_position_indexes", _replace("probe_position_indexes", np.arange(7.0))),
    "length mismatch": ("probe_position_y_m", _replace("probe_position_y_m", np.zeros(6))),
    "NaN in object": ("object", _replace("object", np.full((2, 20, 24), np.nan, dtype=np.complex64))),
    "group not dataset": ("probe", lambda h5: (h5.__delitem__("probe"), h5.create_group("probe"))),
    "layer spacing": ("object_layer_spacing_m", _replace("object_layer_spacing_m", np.zeros(3))),
    "lone loss values": ("loss_epochs", lambda h5: h5.__delitem__("loss_epochs")),
}


@pytest.mark.parametrize("case", sorted(BAD_PRODUCTS))
def test_bad_product_names_file_and_key(tmp_path: Path, case: str) -> None:
    key, edit = BAD_PRODUCTS[case]
    path = tmp_path / "p.h5"
    write_product(path, make_product())
    _edit(path, edit)
    with pytest.raises(PtychodusFormatError) as info:
        read_product(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


def test_truncated_and_non_hdf5_files(tmp_path: Path) -> None:
    good = tmp_path / "p.h5"
    write_product(good, make_product())
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    for path in (truncated, text):
        with pytest.raises(PtychodusFormatError, match=str(path)):
            read_product(path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_product(tmp_path / "missing.h5")


@pytest.mark.parametrize("change, key", [
    ({"position_x_m": np.zeros(3)}, "probe_position_x_m"),
    ({"position_indexes": np.zeros(7)}, "probe_position_indexes"),
    ({"probe": np.ones((8, 8))}, "probe"),
    ({"object": np.ones((1, 1, 4, 4), np.complex64)}, "object"),
    ({"opr_weights": np.ones((7, 3))}, "opr_weights"),
    ({"object_pixel_width_m": 0.0}, "object_pixel_width_m"),
    ({"loss_values": np.ones(2)}, "loss_values"),
])
def test_invalid_product_in_memory(change: dict, key: str) -> None:
    with pytest.raises(PtychodusFormatError, match=f"'{key}'"):
        dataclasses.replace(make_product(), **change)
    with pytest.raises(PtychodusFormatError, match="'polarization'"):
        dataclasses.replace(make_product(), metadata=ProductMetadata(1.0, 1e4, polarization="linear"))


# ------------------------------------------------------------------------------ atomic writes
def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.h5"
    original = make_product(0)
    write_product(path, original)
    before = path.read_bytes()
    real_writer = product_hdf5._write_product_h5

    def crash_midway(h5: h5py.File, product: ProductData) -> None:
        real_writer(h5, product)
        h5.flush()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(product_hdf5, "_write_product_h5", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        write_product(path, make_product(1))
    assert path.read_bytes() == before
    assert_products_equal(original, read_product(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]


def test_write_into_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_product(tmp_path / "nope" / "p.h5", make_product())
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ diffraction files
def make_diffraction(seed: int = 0) -> DiffractionData:
    rng = np.random.default_rng(seed)
    bad = np.zeros((16, 12), dtype=bool)
    bad[3, 4] = True
    return DiffractionData(counts=rng.poisson(5.0, size=(6, 16, 12)).astype(np.uint16),
                           indexes=np.arange(6, dtype=np.int64)[::-1].copy(), bad_pixels=bad,
                           detector_pixel_width_m=75e-6, detector_pixel_height_m=55e-6,
                           probe_photon_counts=rng.uniform(size=6))


def test_diffraction_round_trips_with_ptychodus(tmp_path: Path) -> None:
    data = make_diffraction()
    write_diffraction(tmp_path / "ours.h5", data)
    theirs = load_diffraction_data(tmp_path / "ours.h5")
    np.testing.assert_array_equal(theirs.get_indexes(), data.indexes)
    assert theirs._patterns.dtype == np.uint16
    np.testing.assert_array_equal(theirs._patterns, data.counts)
    np.testing.assert_array_equal(theirs._bad_pixels, data.bad_pixels)
    np.testing.assert_array_equal(theirs.get_probe_photon_counts(), data.probe_photon_counts)
    assert theirs.get_pixel_geometry() == PixelGeometry(75e-6, 55e-6)

    save_diffraction_data(tmp_path / "theirs.h5", theirs)
    back = read_diffraction(tmp_path / "theirs.h5")
    for key in ("counts", "indexes", "bad_pixels", "probe_photon_counts"):
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key), err_msg=key)
        assert getattr(back, key).dtype == getattr(data, key).dtype, key
    assert (back.detector_pixel_width_m, back.detector_pixel_height_m) == (75e-6, 55e-6)
    assert h5_layout(tmp_path / "ours.h5") == h5_layout(tmp_path / "theirs.h5")


@pytest.mark.parametrize("key, edit", [
    ("bad_pixels", lambda h5: h5.__delitem__("bad_pixels")),
    ("detector_pixel_width_m", lambda h5: h5["patterns"].attrs.__delitem__("detector_pixel_width_m")),
    ("patterns", _replace("patterns", np.zeros((6, 16)))),
    ("indexes", _replace("indexes", np.arange(5))),
])
def test_bad_diffraction_names_file_and_key(tmp_path: Path, key: str, edit) -> None:
    path = tmp_path / "diffraction.h5"
    write_diffraction(path, make_diffraction())
    _edit(path, edit)
    with pytest.raises(PtychodusFormatError) as info:
        read_diffraction(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


def test_benchmark_script_runs_small() -> None:
    """bench/product_io.py (8192^2 object, 100k positions by default) at a tiny size: valid JSON report."""
    bench = Path(__file__).resolve().parents[1] / "bench" / "product_io.py"
    out = subprocess.run([sys.executable, str(bench), "--size", "256", "--positions", "1000"],
                         check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    assert report["object_shape"] == [256, 256] and report["positions"] == 1000
    assert report["file_mib"] >= report["data_mib"] > 0.5
    assert report["write_s"] > 0 and report["read_s"] > 0 and report["read_peak_rss_mib"] > report["data_mib"]
