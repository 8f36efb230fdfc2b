"""The scan dataset: one explicit type for a ptychography scan (see docs/conventions.md)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class ScanDataError(ValueError):
    """Invalid scan data; the message names the source, the key and what was expected."""


@dataclass
class ScanMetadata:
    """Physical metadata of a scan; None where unknown.

    nphotons: mean total photon count per pattern (counts).
    object_pixel_size_m: object (and probe) pixel size in metres.
    detector_pixel_size_m, detector_distance_m: detector geometry in metres.
    photon_energy_eV: photon energy in electronvolts.
    name: a display name (e.g. a Ptychodus product name).
    probe_photon_count: photons in the probe per exposure (Ptychodus product metadata).
    exposure_time_s: exposure time per pattern in seconds.
    object_origin_x_m, object_origin_y_m: position in metres of the centre of object pixel (0, 0);
        maps object-pixel coordinates to metres as x_m = object_origin_x_m + x * object_pixel_size_m
        (independent of the object array's size, so any object on this pixel grid is placed exactly).
    """

    nphotons: float | None = None
    object_pixel_size_m: float | None = None
    detector_pixel_size_m: float | None = None
    detector_distance_m: float | None = None
    photon_energy_eV: float | None = None
    name: str | None = None
    probe_photon_count: float | None = None
    exposure_time_s: float | None = None
    object_origin_x_m: float | None = None
    object_origin_y_m: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScanMetadata:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(values.get("extra", {}))
        extra.update({k: v for k, v in values.items() if k not in known})
        kwargs = {k: v for k, v in values.items() if k in known and k != "extra"}
        return cls(**kwargs, extra=extra)


@dataclass
class ScanData:
    """A ptychography scan.

    amplitudes: float32 (n, N, N), diffraction AMPLITUDES = sqrt(counts), zero frequency at the centre.
    positions: float64 (n, 2), object-pixel coordinates (x, y) of each pattern's patch centre.
    probe: complex64 (N, N), the illumination in the object plane (scaled so that expected counts are
        |fftshift(fft2(probe * patch, norm='ortho'))|^2 when known; otherwise arbitrary scale).
    object: optional complex64 (H, W) ground truth (or initial guess) on the object-pixel grid.
    scan_index: int64 (n,), which scan each pattern belongs to.
    metadata: physical metadata.
    source: where the data came from (a file path or a description), used in error messages.
    """

    amplitudes: np.ndarray
    positions: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    metadata: ScanMetadata = field(default_factory=ScanMetadata)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.amplitudes = np.asarray(self.amplitudes)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.probe = np.asarray(self.probe)
        if self.scan_index is None:
            self.scan_index = np.zeros(len(self.amplitudes), dtype=np.int64)
        self.scan_index = np.asarray(self.scan_index, dtype=np.int64)
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def n_patterns(self) -> int:
        return int(self.amplitudes.shape[0])

    @property
    def N(self) -> int:
        """Pattern (and patch) side length in pixels."""
        return int(self.amplitudes.shape[-1])

    @property
    def x(self) -> np.ndarray:
        return self.positions[:, 0]

    @property
    def y(self) -> np.ndarray:
        return self.positions[:, 1]

    @property
    def counts_per_pattern(self) -> np.ndarray:
        """Total counts of each pattern (sum of amplitude squared), float64 (n,)."""
        return np.einsum("nij,nij->n", self.amplitudes, self.amplitudes, dtype=np.float64)

    def subset(self, indices: np.ndarray) -> ScanData:
        """A scan holding only the given patterns (same probe, object and metadata)."""
        indices = np.asarray(indices)
        return dataclasses.replace(
            self,
            amplitudes=self.amplitudes[indices],
            positions=self.positions[indices],
            scan_index=self.scan_index[indices],
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ScanDataError naming the source and key for any inconsistency."""
        a = self.amplitudes
        check_pattern_stack(a.shape, a.dtype, self.source)
        if a.dtype != np.float32:
            self.amplitudes = a = a.astype(np.float32)
        check_amplitude_values(a, self.source)
        self.probe, self.object = check_scan_geometry(
            self.source, a.shape[0], a.shape[1], self.positions, self.probe, self.object)
        if self.scan_index.shape != (a.shape[0],):
            raise _fail(self.source, "scan_index", f"shape ({a.shape[0]},)", f"shape {self.scan_index.shape}")


def _fail(source: str, key: str, expected: str, got: str) -> ScanDataError:
    return ScanDataError(f"{source}: '{key}': expected {expected}, got {got}")


def check_pattern_stack(shape: tuple[int, ...], dtype: np.dtype, source: str, key: str = "diff3d", *,
                        counts: bool = False) -> None:
    """The layout of a pattern stack, without reading it: (n, N, N) with n > 0; floating-point
    amplitudes, or (counts=True) real counts of any integer or floating dtype."""
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] == 0:
        raise _fail(source, key, "amplitudes of shape (n, N, N) with square N x N patterns and n > 0", f"shape {shape}")
    real = np.issubdtype(dtype, np.floating) or (counts and np.issubdtype(dtype, np.integer))
    if not real:
        raise _fail(source, key, "real counts" if counts else "floating-point amplitudes", f"dtype {dtype}")


def check_amplitude_values(amplitudes: np.ndarray, source: str, key: str = "diff3d", *,
                           pattern_numbers: np.ndarray | None = None, counts: bool = False) -> None:
    """Finite, non-negative amplitudes (or counts), shape (n, N, N). pattern_numbers: the scan's numbers
    of a block's patterns, to name the first bad one."""
    nonfinite = ~np.isfinite(amplitudes)
    if np.any(nonfinite):
        raise _fail(source, key, f"finite {'counts' if counts else 'values'}",
                    f"{int(np.count_nonzero(nonfinite))} NaN/inf values{_first_bad(nonfinite, pattern_numbers)}")
    negative = amplitudes < 0
    if np.any(negative):
        raise _fail(source, key, f"non-negative {'counts' if counts else 'amplitudes'}",
                    f"minimum {float(amplitudes.min())}{_first_bad(negative, pattern_numbers)}")


def _first_bad(bad: np.ndarray, pattern_numbers: np.ndarray | None) -> str:
    """' (first in pattern #i)' for a (n, N, N) mask of bad pixels, or '' without pattern numbers."""
    if pattern_numbers is None:
        return ""
    return f" (first in pattern #{int(pattern_numbers[np.flatnonzero(bad.any(axis=(1, 2)))[0]])})"


class ScanKeys(NamedTuple):
    """What a file calls a scan's positions, probe and object (named in error messages)."""

    positions: str
    probe: str
    object: str


NPZ_KEYS = ScanKeys("xcoords/ycoords", "probeGuess", "objectGuess")


def check_scan_geometry(source: str, n: int, big_n: int, positions: np.ndarray, probe: np.ndarray,
                        obj: np.ndarray | None, keys: ScanKeys = NPZ_KEYS) -> tuple[np.ndarray, np.ndarray | None]:
    """Check the positions (n, 2), probe (N, N) and optional object of a scan of n N x N patterns.
    Returns (probe as complex64, object as complex64 or None)."""
    if positions.shape != (n, 2):
        raise _fail(source, keys.positions, f"{n} positions (one per pattern)", f"shape {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise _fail(source, keys.positions, "finite positions", "NaN/inf")
    if probe.shape != (big_n, big_n):
        raise _fail(source, keys.probe, f"complex ({big_n}, {big_n}) matching the patterns", f"shape {probe.shape}")
    if not np.all(np.isfinite(probe)):
        raise _fail(source, keys.probe, "finite values", "NaN/inf")
    probe = probe.astype(np.complex64)
    if obj is None:
        return probe, None
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise _fail(source, keys.object, "a complex 2-D array", f"shape {obj.shape}")
    if not np.all(np.isfinite(obj)):
        raise _fail(source, keys.object, "finite values", "NaN/inf")
    _check_positions_inside_object(source, positions, obj.shape, keys.positions)
    return probe, obj.astype(np.complex64)


def _check_positions_inside_object(source: str, positions: np.ndarray, shape: tuple[int, int], key: str) -> None:
    """Every patch centre must lie inside the object grid (half a patch of margin is not required)."""
    h, w = shape
    x, y = positions[:, 0], positions[:, 1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    if np.any(outside):
        i = int(np.flatnonzero(outside)[0])
        raise _fail(
            source,
            key,
            f"positions inside the object grid (x in [0, {w - 1}], y in [0, {h - 1}])",
            f"{int(outside.sum())} outside, e.g. #{i} at (x={x[i]:.1f}, y={y[i]:.1f})",
        )


def counts_to_amplitudes(counts: np.ndarray, source: str = "<memory>", key: str = "diff3d") -> np.ndarray:
    """Convert photon counts (any real dtype, e.g. uint16) to float32 amplitudes via float64 sqrt."""
    counts = np.asarray(counts)
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise _fail(source, key, "real counts", f"dtype {counts.dtype}")
    c64 = counts.astype(np.float64)
    check_amplitude_values(c64, source, key, counts=True)
    return np.sqrt(c64).astype(np.float32)


def first_probe_mode(probe: np.ndarray, source: str = "<memory>", key: str = "probeGuess") -> np.ndarray:
    """Reduce a (modes..., N, N) probe to its first mode (warning when other modes are dropped)."""
    probe = np.asarray(probe)
    if probe.ndim < 2:
        raise ScanDataError(f"{source}: '{key}': expected a complex (N, N) probe, got shape {probe.shape}")
    if probe.ndim > 2:
        leading = int(np.prod(probe.shape[:-2]))
        if leading > 1:
            warnings.warn(f"{source}: '{key}' has {leading} probe modes; using the first mode only", stacklevel=2)
        probe = probe.reshape((-1,) + probe.shape[-2:])[0]
    return probe.astype(np.complex64)
