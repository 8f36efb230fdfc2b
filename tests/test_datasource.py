"""Streamed scan sources: the same checks as the in-memory reader, with the file's own key names."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ptycho.datasource import HDF5Source, NpzMemmapSource, write_scan_hdf5
from ptycho.scan import ScanDataError

N, N_PATTERNS = 8, 6


def _amplitudes() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 30, (N_PATTERNS, N, N)).astype(np.float32)


def _positions() -> np.ndarray:
    return np.random.default_rng(1).uniform(4, 20, (N_PATTERNS, 2))


def _write_h5(path: Path, **overrides: np.ndarray) -> Path:
    datasets = {"amplitudes": _amplitudes(), "positions": _positions(), "probe": np.ones((N, N), np.complex64),
                **overrides}
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value
    return path


@pytest.mark.parametrize("overrides, key, expected", [
    ({"amplitudes": _amplitudes().astype(np.complex64)}, "amplitudes", "floating-point amplitudes, got dtype complex64"),
    ({"amplitudes": np.ones((N_PATTERNS, N, N + 1), np.float32)}, "amplitudes", "square N x N patterns"),
    ({"positions": np.full((N_PATTERNS, 2), np.nan)}, "positions", "finite positions"),
    ({"positions": np.ones((N_PATTERNS - 1, 2))}, "positions", f"{N_PATTERNS} positions (one per pattern)"),
    ({"probe": np.ones((N, N + 2), np.complex64)}, "probe", f"complex ({N}, {N}) matching the patterns"),
    ({"object": np.ones((4, 4), np.complex64)}, "positions", "inside the object grid"),
])
def test_hdf5_source_names_file_and_dataset(tmp_path: Path, overrides: dict, key: str, expected: str) -> None:
    path = _write_h5(tmp_path / "scan.h5", **overrides)
    with pytest.raises(ScanDataError) as info:
        HDF5Source(path)
    message = str(info.value)
    assert message.startswith(f"{path}: '{key}': expected ") and expected in message, message


def test_a_bad_pattern_is_named_by_its_number_when_it_is_read(tmp_path: Path) -> None:
    amplitudes = _amplitudes()
    amplitudes[4, 2, 3] = np.nan
    h5 = tmp_path / "scan.h5"
    write_scan_hdf5(h5, _positions(), np.ones((N, N), np.complex64), [amplitudes])
    npz = tmp_path / "scan.npz"
    counts = np.rint(_amplitudes() ** 2).astype(np.int32)
    counts[3, 0, 0] = -1
    np.savez(npz, diff3d=counts, xcoords=_positions()[:, 0], ycoords=_positions()[:, 1],
             probeGuess=np.ones((N, N), np.complex64))
    hdf5_source, npz_source = HDF5Source(h5), NpzMemmapSource(npz)
    np.testing.assert_array_equal(hdf5_source.read_amplitudes(np.array([5, 0])), amplitudes[[5, 0]])
    with pytest.raises(ScanDataError, match=rf"scan\.h5: 'amplitudes': expected finite values, got 1 NaN/inf "
                                            rf"values \(first in pattern #4\)$"):
        hdf5_source.read_amplitudes(np.array([5, 4, 1]))
    with pytest.raises(ScanDataError, match=rf"scan\.npz: 'diff3d': expected non-negative counts, got minimum -1\.0 "
                                            rf"\(first in pattern #3\)$"):
        npz_source.read_amplitudes(np.array([5, 3, 1, 0]))
    np.testing.assert_allclose(npz_source.read_amplitudes(np.array([2])), np.sqrt(counts[[2]]), rtol=1e-6)
