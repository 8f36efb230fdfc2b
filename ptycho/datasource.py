"""Where diffraction data come from: in memory, or streamed from disk in batches.

A `ScanSource` gives positions, probe and (optional) object eagerly (they are small) and
diffraction AMPLITUDES on demand, so a scan larger than RAM trains and infers with bounded memory.
Implementations:
  InMemorySource   a ScanData
  HDF5Source       datasets `amplitudes` (n, N, N) float32, `positions` (n, 2), `probe`, optional
                   `object`, read lazily with h5py (write one with `write_scan_hdf5`)
  NpzMemmapSource  an uncompressed reference NPZ whose `diff3d` is memory-mapped (no full read)
`ptycho.batches.GroupedBatches` turns a source plus groups into Keras batches.

The on-disk sources check what the in-memory reader checks (`ptycho.scan`), naming the file and its
key: the layout and the small arrays when opened, each pattern's values (finite, non-negative) as it is
read, so a bad pattern deep in a large file stops training or inference with its number.
"""

from __future__ import annotations

import os
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from ptycho.atomic import atomic_output
from ptycho.npz_io import load_scan_npz, open_npz, read_scan_parts
from ptycho.scan import (ScanData, ScanDataError, ScanKeys, ScanMetadata, check_amplitude_values,
                         check_pattern_stack, check_scan_geometry, first_probe_mode)

_STATS_CHUNK = 2048
_HDF5_KEYS = ScanKeys("positions", "probe", "object")


class ScanSource(Protocol):
    """A scan whose diffraction amplitudes are read on demand."""

    source: str
    positions: np.ndarray  # float64 (n, 2) (x, y) object pixels
    probe: np.ndarray  # complex64 (N, N)
    object: np.ndarray | None  # complex64 (H, W) ground truth / initial guess, if any
    metadata: ScanMetadata

    @property
    def n_patterns(self) -> int: ...

    @property
    def N(self) -> int: ...

    def read_amplitudes(self, indices: np.ndarray) -> np.ndarray:
        """float32 (len(indices), N, N) amplitudes in the order of `indices`."""
        ...


def mean_counts_per_pattern(source: ScanSource) -> float:
    """Mean total counts (sum of amplitude^2) per pattern, computed in chunks (bounded memory)."""
    total = 0.0
    for start in range(0, source.n_patterns, _STATS_CHUNK):
        chunk = source.read_amplitudes(np.arange(start, min(start + _STATS_CHUNK, source.n_patterns)))
        total += float(np.einsum("nij,nij->", chunk, chunk, dtype=np.float64))
    return total / source.n_patterns


class InMemorySource:
    """A ScanData held in memory."""

    def __init__(self, scan: ScanData) -> None:
        self.scan = scan
        self.source = scan.source
        self.positions = scan.positions
        self.probe = scan.probe
        self.object = scan.object
        self.metadata = scan.metadata

    @property
    def n_patterns(self) -> int:
        return self.scan.n_patterns

    @property
    def N(self) -> int:
        return self.scan.N

    def read_amplitudes(self, indices: np.ndarray) -> np.ndarray:
        return self.scan.amplitudes[np.asarray(indices)]


class _LazyArraySource:
    """Shared logic of the on-disk sources: `self._patterns` is any lazily indexable (n, N, N) array."""

    source: str
    _patterns: h5py.Dataset | np.memmap
    _patterns_key: str
    _is_counts: bool

    @property
    def n_patterns(self) -> int:
        return int(self._patterns.shape[0])

    @property
    def N(self) -> int:
        return int(self._patterns.shape[-1])

    def read_amplitudes(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        unique, inverse = np.unique(indices, return_inverse=True)
        block = np.asarray(self._patterns[unique])  # sorted reads: what h5py needs, fast for memmaps
        check_amplitude_values(block, self.source, self._patterns_key, pattern_numbers=unique, counts=self._is_counts)
        block = block[inverse]
        if self._is_counts:
            return np.sqrt(block.astype(np.float64)).astype(np.float32)
        return block.astype(np.float32, copy=False)


class HDF5Source(_LazyArraySource):
    """A scan stored in an HDF5 file (see `write_scan_hdf5`), read lazily."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.source = os.fspath(path)
        try:
            self._file = h5py.File(self.source, "r")
        except OSError as exc:
            raise ScanDataError(f"{self.source}: cannot be opened as HDF5 ({exc})") from exc
        for key in ("amplitudes", "positions", "probe"):
            if key not in self._file:
                raise ScanDataError(f"{self.source}: '{key}': missing dataset (expected a scan HDF5 file)")
        self._patterns = self._file["amplitudes"]
        self._patterns_key = "amplitudes"
        self._is_counts = False
        check_pattern_stack(self._patterns.shape, self._patterns.dtype, self.source, self._patterns_key)
        self.positions = np.asarray(self._file["positions"], dtype=np.float64)
        probe = first_probe_mode(self._file["probe"][()], self.source, "probe")
        obj = self._file["object"][()] if "object" in self._file else None
        self.probe, self.object = check_scan_geometry(self.source, self.n_patterns, self.N, self.positions, probe,
                                                      obj, _HDF5_KEYS)
        self.metadata = ScanMetadata(nphotons=self._file.attrs.get("nphotons"))

    def close(self) -> None:
        self._file.close()


def write_scan_hdf5(path: str | os.PathLike[str], positions: np.ndarray, probe: np.ndarray,
                    amplitude_chunks: Iterable[np.ndarray], *, obj: np.ndarray | None = None,
                    nphotons: float | None = None) -> None:
    """Write a scan HDF5 file from amplitude chunks (so it can exceed RAM); atomic (temp + rename)."""
    path = Path(path)
    positions = np.asarray(positions, np.float64)
    n, size = len(positions), probe.shape[-1]
    with atomic_output(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            dataset = f.create_dataset("amplitudes", (n, size, size), np.float32, chunks=(1, size, size))
            start = 0
            for chunk in amplitude_chunks:
                dataset[start:start + len(chunk)] = chunk
                start += len(chunk)
            if start != n:
                raise ValueError(f"{path}: 'amplitudes': expected {n} patterns, got {start}")
            f["positions"] = positions
            f["probe"] = np.asarray(probe, np.complex64)
            if obj is not None:
                f["object"] = np.asarray(obj, np.complex64)
            if nphotons is not None:
                f.attrs["nphotons"] = float(nphotons)


class NpzMemmapSource(_LazyArraySource):
    """An uncompressed reference NPZ with `diff3d` memory-mapped (amplitudes, or counts if the file
    has Ptychodus' `bad_pixels` key or integer patterns); the small arrays are read normally."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.source = os.fspath(path)
        with open_npz(self.source) as npz:
            parts = read_scan_parts(npz, self.source)
        self._patterns_key = parts.diffraction_key
        self._patterns = _memmap_npz_member(self.source, self._patterns_key)
        self._is_counts = parts.patterns_are_counts(self._patterns.dtype)
        check_pattern_stack(self._patterns.shape, self._patterns.dtype, self.source, self._patterns_key,
                            counts=self._is_counts)
        self.positions = parts.positions
        self.probe, self.object = check_scan_geometry(self.source, self.n_patterns, self.N, self.positions,
                                                      parts.probe, parts.object)
        self.metadata = parts.metadata


def _memmap_npz_member(path: str, key: str) -> np.memmap:
    """Memory-map one stored (uncompressed) member of an NPZ archive."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ScanDataError(f"{path}: '{key}': streaming needs an uncompressed NPZ (np.savez, not savez_compressed)")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local_header = f.read(30)
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        f.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    if fortran or dtype.hasobject:
        raise ScanDataError(f"{path}: '{key}': expected a C-ordered numeric array")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def open_source(data: ScanData | ScanSource | str | os.PathLike[str], *, stream: bool = False) -> ScanSource:
    """A ScanSource for a ScanData, an existing source, or a path (.h5/.hdf5 scans stream; .npz
    streams when `stream`, else is loaded with the full reader)."""
    if isinstance(data, ScanData):
        return InMemorySource(data)
    if not isinstance(data, (str, os.PathLike)):
        return data
    path = Path(data)
    if path.suffix in (".h5", ".hdf5") and _is_scan_hdf5(path):
        return HDF5Source(path)
    if path.suffix == ".npz" and stream:
        return NpzMemmapSource(path)
    return InMemorySource(load_scan_npz(path))


def _is_scan_hdf5(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "amplitudes" in f and "positions" in f
    except OSError:
        return False

