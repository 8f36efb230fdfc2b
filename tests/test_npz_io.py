"""Tests of ptycho.npz_io: the reference NPZ layout, its variants, and errors on bad input."""

from __future__ import annotations

import os
import pathlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from ptycho.datasource import NpzMemmapSource
from ptycho.npz_io import load_scan_npz, save_scan_npz
from ptycho.scan import ScanData, ScanDataError, ScanMetadata

N, N_PATTERNS, OBJECT_SHAPE = 8, 5, (32, 40)


def _shared_data() -> Path:
    override = os.environ.get("PTYCHOPINN_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def _reference_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A small valid scan in the reference layout (amplitude diff3d)."""
    rng = np.random.default_rng(seed)
    return {
        "diff3d": rng.uniform(0, 30, (N_PATTERNS, N, N)).astype(np.float32),
        "xcoords": rng.uniform(4, OBJECT_SHAPE[1] - 5, N_PATTERNS),
        "ycoords": rng.uniform(4, OBJECT_SHAPE[0] - 5, N_PATTERNS),
        "probeGuess": (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))).astype(np.complex64),
        "objectGuess": np.exp(1j * rng.uniform(-1, 1, OBJECT_SHAPE)).astype(np.complex64),
        "scan_index": np.zeros(N_PATTERNS, dtype=np.int64),
    }


def _ptychodus_arrays(counts: np.ndarray, probe_modes: int = 1) -> dict[str, np.ndarray]:
    """Ptychodus 1.7's exported training data: raw counts, bad_pixels, (modes, N, N) probe."""
    ref = _reference_arrays()
    modes = np.stack([ref["probeGuess"] * (m + 1) for m in range(probe_modes)])
    return {
        "xcoords": ref["xcoords"], "ycoords": ref["ycoords"],
        "xcoords_start": ref["xcoords"], "ycoords_start": ref["ycoords"],
        "diff3d": counts, "bad_pixels": np.zeros((N, N), dtype=bool),
        "probeGuess": modes, "objectGuess": ref["objectGuess"],
        "scan_index": np.zeros(N_PATTERNS, dtype=int),
    }


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _assert_scans_equal(a: ScanData, b: ScanData) -> None:
    for name in ("amplitudes", "positions", "probe", "object", "scan_index"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.metadata == b.metadata


# ------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip_is_exact(tmp_path: Path, compressed: bool) -> None:
    ref = _reference_arrays()
    metadata = ScanMetadata(nphotons=1.25e6, object_pixel_size_m=1.5e-8, photon_energy_eV=8800.0,
                            extra={"seed": 7, "sample": "lines", "simulated": True})
    scan = ScanData(
        amplitudes=ref["diff3d"], positions=np.stack([ref["xcoords"], ref["ycoords"]], axis=1),
        probe=ref["probeGuess"], object=ref["objectGuess"], scan_index=np.array([0, 0, 1, 1, 2]),
        metadata=metadata,
    )
    path = tmp_path / "scan.npz"
    save_scan_npz(scan, path, compressed=compressed)
    loaded = load_scan_npz(path)
    _assert_scans_equal(scan, loaded)
    assert loaded.metadata.nphotons == 1.25e6
    assert loaded.metadata.extra == {"seed": 7, "sample": "lines", "simulated": True}
    assert loaded.source == str(path)
    with np.load(path, allow_pickle=False) as raw:
        assert raw["diff3d"].dtype == np.float32 and raw["probeGuess"].dtype == np.complex64
        assert raw["xcoords"].dtype == np.float64 and raw["scan_index"].dtype == np.int64
        np.testing.assert_array_equal(raw["xcoords_start"], raw["xcoords"])
        np.testing.assert_array_equal(raw["ycoords_start"], raw["ycoords"])
        assert float(raw["nphotons"]) == 1.25e6


def test_save_without_object_and_nphotons_round_trips(tmp_path: Path) -> None:
    ref = _reference_arrays()
    scan = ScanData(amplitudes=ref["diff3d"], positions=np.stack([ref["xcoords"], ref["ycoords"]], axis=1),
                    probe=ref["probeGuess"])
    path = tmp_path / "bare.npz"
    save_scan_npz(scan, path)
    with np.load(path) as raw:
        assert "objectGuess" not in raw.files and "nphotons" not in raw.files
    loaded = load_scan_npz(path)
    assert loaded.object is None and loaded.metadata.nphotons is None
    np.testing.assert_array_equal(loaded.amplitudes, scan.amplitudes)


def test_save_is_atomic_and_writes_exactly_the_given_name(tmp_path: Path) -> None:
    ref = _reference_arrays()
    scan = ScanData(amplitudes=ref["diff3d"], positions=np.stack([ref["xcoords"], ref["ycoords"]], axis=1),
                    probe=ref["probeGuess"])
    path = tmp_path / "scan.data"  # no .npz suffix: must not become scan.data.npz
    path.write_bytes(b"old content")
    save_scan_npz(scan, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.data"]
    np.testing.assert_array_equal(load_scan_npz(path).amplitudes, ref["diff3d"])


def test_failed_save_leaves_existing_file_and_no_temp(tmp_path: Path) -> None:
    ref = _reference_arrays()
    scan = ScanData(amplitudes=ref["diff3d"], positions=np.stack([ref["xcoords"], ref["ycoords"]], axis=1),
                    probe=ref["probeGuess"], metadata=ScanMetadata(extra={"bad": object()}))
    path = tmp_path / "scan.npz"
    path.write_bytes(b"old content")
    with pytest.raises(ScanDataError, match="_metadata"):
        save_scan_npz(scan, path)
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["scan.npz"]


# ------------------------------------------------------------------------------------ variants
def test_legacy_axis_order_is_transposed(tmp_path: Path) -> None:
    ref = _reference_arrays()
    legacy = dict(ref, diff3d=np.moveaxis(ref["diff3d"], 0, -1))  # (N, N, n)
    assert legacy["diff3d"].shape == (N, N, N_PATTERNS)
    scan = load_scan_npz(_write(tmp_path / "legacy.npz", **legacy))
    assert scan.amplitudes.shape == (N_PATTERNS, N, N)
    np.testing.assert_array_equal(scan.amplitudes, ref["diff3d"])


def test_diffraction_key_is_accepted(tmp_path: Path) -> None:
    ref = _reference_arrays()
    arrays = dict(ref, diffraction=ref["diff3d"])
    del arrays["diff3d"]
    scan = load_scan_npz(_write(tmp_path / "alt.npz", **arrays))
    np.testing.assert_array_equal(scan.amplitudes, ref["diff3d"])
    np.testing.assert_array_equal(scan.x, ref["xcoords"])
    np.testing.assert_array_equal(scan.y, ref["ycoords"])


def test_reference_scalars_go_to_metadata(tmp_path: Path) -> None:
    arrays = dict(_reference_arrays(), nphotons=np.float64(1e9), seed=np.int64(3), label=np.array("sim"),
                  big=np.zeros((100, 100)))
    scan = load_scan_npz(_write(tmp_path / "s.npz", **arrays))
    assert scan.metadata.nphotons == 1e9
    assert scan.metadata.extra == {"seed": 3, "label": "sim"}


def test_ptychodus_uint16_counts_convert_without_overflow(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(65000, 65536, (N_PATTERNS, N, N), dtype=np.uint16)
    counts[0, 0, 0] = 65535
    path = _write(tmp_path / "train_data.npz", **_ptychodus_arrays(counts))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a single probe mode must not warn
        scan = load_scan_npz(path)
    expected = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    assert scan.amplitudes.dtype == np.float32
    np.testing.assert_array_equal(scan.amplitudes, expected)
    assert scan.amplitudes[0, 0, 0] == np.float32(np.sqrt(65535.0))
    np.testing.assert_allclose(scan.counts_per_pattern, counts.reshape(N_PATTERNS, -1).sum(1, dtype=np.float64),
                               rtol=1e-6)
    assert scan.probe.shape == (N, N) and scan.metadata.nphotons is None


def test_ptychodus_float_counts_and_multimode_probe(tmp_path: Path) -> None:
    counts = np.full((N_PATTERNS, N, N), 16.0, dtype=np.float32)
    arrays = _ptychodus_arrays(counts, probe_modes=3)
    with pytest.warns(UserWarning, match="3 probe modes"):
        scan = load_scan_npz(_write(tmp_path / "train_data.npz", **arrays))
    np.testing.assert_array_equal(scan.amplitudes, np.full((N_PATTERNS, N, N), 4.0, dtype=np.float32))
    np.testing.assert_array_equal(scan.probe, arrays["probeGuess"][0])


def test_kind_override(tmp_path: Path) -> None:
    arrays = _reference_arrays()
    arrays["diff3d"] = np.full((N_PATTERNS, N, N), 9.0, dtype=np.float32)
    path = _write(tmp_path / "s.npz", **arrays)
    assert load_scan_npz(path).amplitudes[0, 0, 0] == 9.0
    assert load_scan_npz(path, kind="counts").amplitudes[0, 0, 0] == 3.0
    ptychodus = _write(tmp_path / "p.npz", **_ptychodus_arrays(np.full((N_PATTERNS, N, N), 9.0)))
    assert load_scan_npz(ptychodus, kind="amplitude").amplitudes[0, 0, 0] == 9.0
    with pytest.raises(ValueError, match="kind"):
        load_scan_npz(path, kind="intensity")  # type: ignore[arg-type]


def test_integer_diff3d_without_bad_pixels_is_read_as_counts(tmp_path: Path) -> None:
    arrays = dict(_reference_arrays(), diff3d=np.full((N_PATTERNS, N, N), 25, dtype=np.uint16))
    assert load_scan_npz(_write(tmp_path / "s.npz", **arrays)).amplitudes[0, 0, 0] == 5.0


# ------------------------------------------------------------------------------------ _metadata
@pytest.mark.parametrize("encode", [False, True])
def test_metadata_json_is_parsed(tmp_path: Path, encode: bool) -> None:
    text = '{"object_pixel_size_m": 2e-8, "detector_distance_m": 1.5, "extra": {"beamline": "2-ID"}, "run": 4}'
    arrays = dict(_reference_arrays(), _metadata=np.array(text.encode() if encode else text))
    metadata = load_scan_npz(_write(tmp_path / "m.npz", **arrays)).metadata
    assert metadata.object_pixel_size_m == 2e-8 and metadata.detector_distance_m == 1.5
    assert metadata.extra == {"beamline": "2-ID", "run": 4}


class _Payload:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (self.marker,))


def test_object_metadata_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    payload = np.empty((), dtype=object)
    payload[()] = _Payload(marker)
    path = tmp_path / "evil.npz"
    np.savez(path, allow_pickle=True, **_reference_arrays(), _metadata=payload)
    with pytest.warns(UserWarning, match="_metadata.*object array"):
        scan = load_scan_npz(path)
    assert not marker.exists()
    assert scan.metadata == ScanMetadata()
    np.testing.assert_array_equal(scan.amplitudes, _reference_arrays()["diff3d"])


def test_object_data_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = np.array([_Payload(marker)] * N_PATTERNS, dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, allow_pickle=True, **dict(_reference_arrays(), xcoords=evil))
    with pytest.raises(ScanDataError, match=r"evil\.npz.*'xcoords'.*object array"):
        load_scan_npz(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------ bad input
def _without(key: str) -> dict[str, np.ndarray]:
    arrays = _reference_arrays()
    del arrays[key]
    return arrays


_BAD_CASES = {
    "missing_diff3d": (_without("diff3d"), "diff3d", "diffraction"),
    "missing_xcoords": (_without("xcoords"), "xcoords", "present"),
    "missing_probe": (_without("probeGuess"), "probeGuess", "present"),
    "non_square": (dict(_reference_arrays(), diff3d=np.ones((N_PATTERNS, N, N + 2), np.float32)), "diff3d", "square"),
    "xy_lengths": (dict(_reference_arrays(), ycoords=np.ones(N_PATTERNS - 1)), "xcoords/ycoords", "equal length"),
    "too_few_positions": (dict(_reference_arrays(), xcoords=np.full(3, 9.0), ycoords=np.full(3, 9.0)),
                          "xcoords/ycoords", "one per pattern"),
    "nan_amplitude": (dict(_reference_arrays(), diff3d=np.full((N_PATTERNS, N, N), np.nan, np.float32)),
                      "diff3d", "finite"),
    "negative_amplitude": (dict(_reference_arrays(), diff3d=-np.ones((N_PATTERNS, N, N), np.float32)),
                           "diff3d", "non-negative"),
    "negative_counts": (_ptychodus_arrays(-np.ones((N_PATTERNS, N, N))), "diff3d", "non-negative counts"),
    "inf_counts": (_ptychodus_arrays(np.full((N_PATTERNS, N, N), np.inf)), "diff3d", "finite counts"),
    "probe_shape": (dict(_reference_arrays(), probeGuess=np.ones((N + 1, N + 1), np.complex64)), "probeGuess",
                    f"({N}, {N})"),
    "outside_object": (dict(_reference_arrays(), xcoords=np.full(N_PATTERNS, 100.0)), "xcoords/ycoords",
                       "inside the object"),
    "object_3d": (dict(_reference_arrays(), objectGuess=np.ones((2,) + OBJECT_SHAPE, np.complex64)),
                  "objectGuess", "2-D"),
    "text_probe": (dict(_reference_arrays(), probeGuess=np.array(["a", "b"])), "probeGuess", "numeric"),
    "string_xcoords": (dict(_reference_arrays(), xcoords=np.array(["1"] * N_PATTERNS)), "xcoords", "1-D real"),
    "float_scan_index": (dict(_reference_arrays(), scan_index=np.full(N_PATTERNS, 0.5)), "scan_index", "integer"),
    "bad_json": (dict(_reference_arrays(), _metadata=np.array("{not json")), "_metadata", "JSON"),
    "json_list": (dict(_reference_arrays(), _metadata=np.array("[1, 2]")), "_metadata", "JSON object"),
    "nphotons_vector": (dict(_reference_arrays(), nphotons=np.ones(3)), "nphotons", "real scalar"),
}


@pytest.mark.parametrize("case", sorted(_BAD_CASES))
def test_bad_input_names_file_and_key(tmp_path: Path, case: str) -> None:
    arrays, key, expected = _BAD_CASES[case]
    path = _write(tmp_path / f"bad_{case}.npz", **arrays)
    with pytest.raises(ScanDataError) as info:
        load_scan_npz(path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and expected in message, message


@pytest.mark.parametrize("case", sorted(_BAD_CASES))
def test_streamed_reader_names_file_and_key_like_the_full_reader(tmp_path: Path, case: str) -> None:
    arrays, key, expected = _BAD_CASES[case]
    path = _write(tmp_path / f"bad_{case}.npz", **arrays)
    with pytest.raises(ScanDataError) as info:
        source = NpzMemmapSource(path)
        source.read_amplitudes(np.arange(source.n_patterns))  # pattern values are checked as they are read
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and expected in message, message


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "whole.npz", **_reference_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScanDataError, match=r"whole\.npz: cannot be read as an NPZ archive \(BadZipFile"):
        load_scan_npz(path)


def test_corrupt_member_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.npz"
    np.savez_compressed(path, **_reference_arrays())
    data = bytearray(path.read_bytes())
    start = data.index(b"diff3d.npy") + 200  # inside the compressed diff3d member
    data[start:start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(ScanDataError, match=r"corrupt\.npz: 'diff3d': expected a readable \.npy member"):
        load_scan_npz(path)


def test_not_an_npz(tmp_path: Path) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("this is not a zip archive\n")
    with pytest.raises(ScanDataError, match=r"notes\.npz: cannot be read as an NPZ archive \(not a zip file: "
                                            r"it starts with b'this i'\)$"):
        load_scan_npz(text)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ScanDataError, match=r"empty\.npz: cannot be read as an NPZ archive \(not a zip file: it is empty\)"):
        load_scan_npz(empty)
    with pytest.raises(ScanDataError, match=r"cannot be read as an NPZ archive \(IsADirectoryError"):
        load_scan_npz(tmp_path)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ScanDataError, match=r"single\.npy: expected an NPZ archive"):
        load_scan_npz(single)
    with pytest.raises(FileNotFoundError):
        load_scan_npz(tmp_path / "absent.npz")


# ------------------------------------------------------------------------------------ shared data
def test_reads_shared_lines_scan() -> None:
    path = _shared_data() / "lines-1e9.npz"
    if not path.exists():
        pytest.skip(f"{path} not available")
    scan = load_scan_npz(path)
    assert scan.amplitudes.shape == (900, 64, 64) and scan.amplitudes.dtype == np.float32
    assert scan.positions.shape == (900, 2) and scan.positions.dtype == np.float64
    assert scan.probe.shape == (64, 64) and scan.probe.dtype == np.complex64
    assert scan.object is not None and scan.object.shape == (256, 256) and scan.object.dtype == np.complex64
    assert scan.metadata.nphotons == 1e9 and scan.metadata.extra == {"seed": 0}
    np.testing.assert_array_equal(scan.scan_index, np.zeros(900, dtype=np.int64))
    # amplitudes: the mean total counts per pattern is the nominal photon count (Poisson noise only)
    assert scan.counts_per_pattern.mean() == pytest.approx(1e9, rel=1e-3)
    with np.load(path) as raw:
        np.testing.assert_array_equal(scan.x, raw["xcoords"])
        np.testing.assert_array_equal(scan.y, raw["ycoords"])
