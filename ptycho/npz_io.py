"""Read and write a scan in the reference NPZ layout of the PtychoPINN ecosystem (NumPy only).

Layout (flat keys, one array each):
  diff3d          float32 (n, N, N) diffraction AMPLITUDES = sqrt(counts), zero frequency at the centre.
                  Also read: the key `diffraction`, and the legacy axis order (N, N, n).
  xcoords, ycoords  float64 (n,) object-pixel coordinates (x, y) of each pattern's patch centre.
  xcoords_start, ycoords_start  float64 (n,): written as copies of xcoords/ycoords, ignored on read.
  probeGuess      complex64 (N, N) probe; a (modes, N, N) probe is reduced to its first mode.
  objectGuess     complex64 (H, W), optional.
  scan_index      int64 (n,), optional (zeros when absent).
  nphotons        float64 scalar, optional: mean total counts per pattern (-> ScanMetadata.nphotons).
  _metadata       0-d unicode (or bytes) JSON string of ScanMetadata.to_dict(), optional.
  Other small 0-d bool/int/float/str arrays (e.g. `seed`) are kept in ScanMetadata.extra.

Ptychodus' exported training data is recognised by its `bad_pixels` key: its `diff3d` holds photon
COUNTS in the detector's dtype (often uint16) and its `probeGuess` is (modes, N, N). Counts are
converted to amplitudes in float64 (see docs/conventions.md).

Nothing is ever unpickled: object arrays are refused (`_metadata` and extra scalars: ignored with a
warning). Every problem with the file's content raises ScanDataError naming the file and the key.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np

from ptycho.atomic import atomic_output
from ptycho.scan import ScanData, ScanDataError, ScanMetadata, counts_to_amplitudes, first_probe_mode

DiffractionKind = Literal["auto", "amplitude", "counts"]
_T = TypeVar("_T")

_DIFFRACTION_KEYS = ("diff3d", "diffraction")
_KNOWN_KEYS = frozenset(
    {*_DIFFRACTION_KEYS, "xcoords", "ycoords", "xcoords_start", "ycoords_start", "probeGuess",
     "objectGuess", "scan_index", "bad_pixels", "nphotons", "_metadata"}
)
_EXTRA_SCALAR_KINDS = "biufU"  # bool, int, uint, float, unicode: JSON-representable scalars
_EXTRA_SCALAR_MAX_BYTES = 4096  # larger members are arrays, not scalars: never loaded as extras
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
_ZIP_MAGIC = b"PK"
_NPY_MAGIC = b"\x93NUMPY"


class _PickledArrayError(ScanDataError):
    """The member is an object array, which would need unpickling (never done)."""


def _fail(source: str, key: str, expected: str, got: str) -> ScanDataError:
    return ScanDataError(f"{source}: '{key}': expected {expected}, got {got}")


# ---------------------------------------------------------------------------------------- reading
def load_scan_npz(path: str | os.PathLike[str], *, kind: DiffractionKind = "auto") -> ScanData:
    """Read a scan from an NPZ file in the reference layout (or Ptychodus' exported training data).

    kind: what `diff3d` holds. 'amplitude' (sqrt of counts), 'counts' (photon counts, any real dtype,
        converted via float64 sqrt), or 'auto': counts when the file has Ptychodus' `bad_pixels` key or
        `diff3d` has an integer dtype, amplitudes otherwise.
    Returns a validated ScanData whose `source` is the file path.
    Raises FileNotFoundError when the file does not exist, ScanDataError for any other bad input.
    """
    if kind not in ("auto", "amplitude", "counts"):
        raise ValueError(f"kind must be 'auto', 'amplitude' or 'counts', got {kind!r}")
    source = os.fspath(path)
    with open_npz(source) as npz:
        return _scan_from_npz(npz, source, kind)


def open_npz(source: str) -> np.lib.npyio.NpzFile:
    """The archive at `source` (never unpickling); FileNotFoundError if missing, ScanDataError otherwise."""
    try:
        with open(source, "rb") as file:
            head = file.read(len(_NPY_MAGIC))
        if not head.startswith((_ZIP_MAGIC, _NPY_MAGIC)):  # np.load would try to unpickle it
            what = f"it starts with {head!r}" if head else "it is empty"
            raise ScanDataError(f"{source}: cannot be read as an NPZ archive (not a zip file: {what})")
        archive = np.load(source, allow_pickle=False)
    except (FileNotFoundError, ScanDataError):
        raise
    except _READ_ERRORS as exc:
        raise ScanDataError(f"{source}: cannot be read as an NPZ archive ({type(exc).__name__}: {exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ScanDataError(f"{source}: expected an NPZ archive (np.savez), got a single .npy array")
    return archive


class ScanParts(NamedTuple):
    """Everything of a reference NPZ scan but its patterns, read and checked member by member."""

    diffraction_key: str
    """'diff3d' or 'diffraction': the member that holds the patterns."""
    has_bad_pixels: bool
    """Ptychodus' exported training data (its patterns are counts)."""
    positions: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None
    scan_index: np.ndarray | None
    metadata: ScanMetadata

    def patterns_are_counts(self, dtype: np.dtype) -> bool:
        """Whether patterns of this dtype are photon counts (Ptychodus' export, or integers), not amplitudes."""
        return self.has_bad_pixels or np.issubdtype(dtype, np.integer)


def read_scan_parts(npz: np.lib.npyio.NpzFile, source: str) -> ScanParts:
    """The members of an open archive (`open_npz`) other than the patterns; ScanDataError naming the key."""
    keys = set(npz.files)
    diffraction_key = next((k for k in _DIFFRACTION_KEYS if k in keys), None)
    if diffraction_key is None:
        raise _fail(source, "diff3d", "a 'diff3d' (or 'diffraction') array of diffraction patterns",
                    f"keys {sorted(keys)}")
    positions = _positions(npz, source)
    probe = _numeric(_read(npz, source, "probeGuess"), source, "probeGuess")
    if probe.ndim > 2:
        probe = first_probe_mode(probe, source, "probeGuess")
    return ScanParts(
        diffraction_key=diffraction_key,
        has_bad_pixels="bad_pixels" in keys,
        positions=positions,
        probe=probe,
        object=_numeric(_read(npz, source, "objectGuess"), source, "objectGuess") if "objectGuess" in keys else None,
        scan_index=_scan_index(_read(npz, source, "scan_index"), source) if "scan_index" in keys else None,
        metadata=_metadata(npz, source, keys),
    )


def _scan_from_npz(npz: np.lib.npyio.NpzFile, source: str, kind: DiffractionKind) -> ScanData:
    parts = read_scan_parts(npz, source)
    key = parts.diffraction_key
    patterns = _patterns_first(_read(npz, source, key), len(parts.positions))
    if kind == "auto":
        kind = "counts" if parts.patterns_are_counts(patterns.dtype) else "amplitude"
    amplitudes = counts_to_amplitudes(patterns, source, key) if kind == "counts" else patterns
    return ScanData(
        amplitudes=amplitudes,
        positions=parts.positions,
        probe=parts.probe,
        object=parts.object,
        scan_index=parts.scan_index,
        metadata=parts.metadata,
        source=source,
    )


def _read(npz: np.lib.npyio.NpzFile, source: str, key: str) -> np.ndarray:
    """One member of the archive; ScanDataError when missing, unreadable or pickled."""
    if key not in npz.files:
        raise _fail(source, key, "this key to be present", f"keys {sorted(npz.files)}")
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _PickledArrayError(
                f"{source}: '{key}': expected a plain numeric/string array, got an object array "
                "(loading it would unpickle arbitrary code; refused)"
            ) from exc
        raise _fail(source, key, "a readable .npy member", f"{type(exc).__name__}: {exc}") from exc
    except _READ_ERRORS as exc:
        raise _fail(source, key, "a readable .npy member (truncated or corrupt file?)",
                    f"{type(exc).__name__}: {exc}") from exc


def _positions(npz: np.lib.npyio.NpzFile, source: str) -> np.ndarray:
    """float64 (n, 2) positions (x, y) from the `xcoords` and `ycoords` members."""
    x = _real_vector(_read(npz, source, "xcoords"), source, "xcoords")
    y = _real_vector(_read(npz, source, "ycoords"), source, "ycoords")
    if x.shape != y.shape:
        raise _fail(source, "xcoords/ycoords", "arrays of equal length", f"shapes {x.shape} and {y.shape}")
    return np.stack([x, y], axis=1)


def _numeric(array: np.ndarray, source: str, key: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number):
        raise _fail(source, key, "a numeric array", f"dtype {array.dtype}")
    return array


def _real_vector(array: np.ndarray, source: str, key: str) -> np.ndarray:
    """A 1-D real array as float64."""
    is_real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if array.ndim != 1 or not is_real:
        raise _fail(source, key, "a 1-D real array (one value per pattern)",
                    f"shape {array.shape}, dtype {array.dtype}")
    return array.astype(np.float64)


def _patterns_first(patterns: np.ndarray, n_positions: int) -> np.ndarray:
    """Patterns as (n, N, N): a legacy (N, N, n) stack (N != n, n = number of positions) is transposed."""
    if patterns.ndim == 3:
        a, b, c = patterns.shape
        if a == b != c and c == n_positions:
            return np.ascontiguousarray(patterns.transpose(2, 0, 1))
    return patterns


def _scan_index(array: np.ndarray, source: str) -> np.ndarray:
    is_integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    )
    if not is_integral:
        raise _fail(source, "scan_index", "integer scan indices", f"dtype {array.dtype}")
    return array.astype(np.int64)


def _metadata(npz: np.lib.npyio.NpzFile, source: str, keys: set[str]) -> ScanMetadata:
    """ScanMetadata from `_metadata` JSON, then the `nphotons` scalar and other small scalars."""
    values: dict[str, Any] = {}
    if "_metadata" in keys:
        values = _optional(npz, source, "_metadata", _parse_metadata_json) or {}
    try:
        metadata = ScanMetadata.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise _fail(source, "_metadata", "the fields of ScanMetadata", f"{type(exc).__name__}: {exc}") from exc
    if "nphotons" in keys:
        nphotons = _read(npz, source, "nphotons")
        if nphotons.size != 1 or not np.issubdtype(nphotons.dtype, np.number) or np.iscomplexobj(nphotons):
            raise _fail(source, "nphotons", "a real scalar (mean counts per pattern)",
                        f"shape {nphotons.shape}, dtype {nphotons.dtype}")
        metadata.nphotons = float(nphotons.reshape(()))
    for key in sorted(keys - _KNOWN_KEYS):
        if npz.zip.getinfo(f"{key}.npy").file_size <= _EXTRA_SCALAR_MAX_BYTES:
            value = _optional(npz, source, key, _extra_scalar)
            if value is not None:
                metadata.extra[key] = value
    return metadata


def _optional(
    npz: np.lib.npyio.NpzFile, source: str, key: str, convert: Callable[[np.ndarray, str, str], _T]
) -> _T | None:
    """convert(array, source, key) of an optional member; None (with a warning) if it is an object array."""
    try:
        array = _read(npz, source, key)
    except _PickledArrayError as exc:
        warnings.warn(f"{exc}; '{key}' ignored", stacklevel=6)  # the caller of load_scan_npz
        return None
    return convert(array, source, key)


def _parse_metadata_json(array: np.ndarray, source: str, key: str) -> dict[str, Any]:
    if array.shape != () or array.dtype.kind not in "US":
        raise _fail(source, key, "a 0-d JSON string", f"shape {array.shape}, dtype {array.dtype}")
    text = array.item()
    try:
        values = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(source, key, "a JSON string", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(values, dict):
        raise _fail(source, key, "a JSON object", type(values).__name__)
    return values


def _extra_scalar(array: np.ndarray, source: str, key: str) -> bool | int | float | str | None:
    """The Python value of a 0-d bool/int/float/str array; None for anything else (not metadata)."""
    if array.shape == () and array.dtype.kind in _EXTRA_SCALAR_KINDS:
        return array.item()
    return None


class Reconstruction(NamedTuple):
    """A reconstruction NPZ (`ptychopinn infer -o OUT.npz`): the object on its grid and the scan on it."""

    object: np.ndarray
    """complex (H, W) object; positions are pixel coordinates (x, y) of this grid."""
    positions: np.ndarray
    """float64 (n, 2) patch centres (x, y), from `xcoords`, `ycoords`."""
    probe: np.ndarray
    """complex (N, N) probe of the scan (first mode)."""


def load_reconstruction_npz(path: str | os.PathLike[str]) -> Reconstruction:
    """Read a reconstruction NPZ written by `ptychopinn infer` (keys object, xcoords, ycoords, probe).
    Raises FileNotFoundError for a missing file and ScanDataError naming the file and key otherwise."""
    source = os.fspath(path)
    with open_npz(source) as npz:
        obj = _read(npz, source, "object")
        if obj.ndim != 2 or not np.iscomplexobj(obj):
            raise _fail(source, "object", "a complex (H, W) array (a reconstruction written by ptychopinn infer)",
                        f"{obj.dtype} {obj.shape}")
        positions = _positions(npz, source)
        probe = _numeric(_read(npz, source, "probe"), source, "probe")
        if probe.ndim > 2:
            probe = first_probe_mode(probe, source, "probe")
        if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
            raise _fail(source, "probe", "a square (N, N) array", f"shape {probe.shape}")
    return Reconstruction(obj, positions, probe)


# ---------------------------------------------------------------------------------------- writing
def save_scan_npz(scan: ScanData, path: str | os.PathLike[str], *, compressed: bool = False) -> None:
    """Write `scan` to `path` (exactly that name; no suffix is appended) in the reference NPZ layout.

    The write is atomic: a temporary file in the same folder is written, flushed and renamed over `path`.
    scan.metadata (extra included) must be JSON-serialisable; it is stored as `_metadata`.
    """
    path = Path(path)
    arrays = _reference_arrays(scan, str(path))
    save = np.savez_compressed if compressed else np.savez
    with atomic_output(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        save(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def _reference_arrays(scan: ScanData, target: str) -> dict[str, np.ndarray]:
    x = np.ascontiguousarray(scan.positions[:, 0], dtype=np.float64)
    y = np.ascontiguousarray(scan.positions[:, 1], dtype=np.float64)
    try:
        metadata_json = json.dumps(scan.metadata.to_dict(), allow_nan=True, default=_json_numpy_scalar)
    except (TypeError, ValueError) as exc:
        raise ScanDataError(f"{target}: '_metadata': expected JSON-serialisable metadata, got {exc}") from exc
    arrays = {
        "diff3d": scan.amplitudes.astype(np.float32),
        "xcoords": x,
        "ycoords": y,
        "xcoords_start": x.copy(),
        "ycoords_start": y.copy(),
        "probeGuess": scan.probe.astype(np.complex64),
        "scan_index": scan.scan_index.astype(np.int64),
        "_metadata": np.array(metadata_json),
    }
    if scan.object is not None:
        arrays["objectGuess"] = scan.object.astype(np.complex64)
    if scan.metadata.nphotons is not None:
        arrays["nphotons"] = np.array(scan.metadata.nphotons, dtype=np.float64)
    return arrays


def _json_numpy_scalar(value: Any) -> Any:
    """json.dumps fallback: NumPy scalars become Python scalars; anything else is refused."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
