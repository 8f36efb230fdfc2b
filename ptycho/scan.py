"""The scan dataset: one explicit type for a ptychography scan (see docs/conventions.md)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

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
    def _fail(self, key: str, expected: str, got: str) -> ScanDataError:
        return ScanDataError(f"{self.source}: '{key}': expected {expected}, got {got}")

    def validate(self) -> None:
        """Raise ScanDataError naming the source and key for any inconsistency."""
        a = self.amplitudes
        if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[0] == 0:
            raise self._fail("diff3d", "amplitudes of shape (n, N, N) with square N x N patterns and n > 0",
                             f"shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise self._fail("diff3d", "floating-point amplitudes", f"dtype {a.dtype}")
        if a.dtype != np.float32:
            self.amplitudes = a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise self._fail("diff3d", "finite values", f"{int(np.count_nonzero(~np.isfinite(a)))} NaN/inf values")
        if np.any(a < 0):
            raise self._fail("diff3d", "non-negative amplitudes", f"minimum {float(a.min())}")
        n, big_n = a.shape[0], a.shape[1]
        if self.positions.shape != (n, 2):
            raise self._fail("xcoords/ycoords", f"{n} positions (one per pattern)", f"shape {self.positions.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise self._fail("xcoords/ycoords", "finite positions", "NaN/inf")
        if self.probe.shape != (big_n, big_n):
            raise self._fail("probeGuess", f"complex ({big_n}, {big_n}) matching the patterns", f"shape {self.probe.shape}")
        if not np.all(np.isfinite(self.probe)):
            raise self._fail("probeGuess", "finite values", "NaN/inf")
        self.probe = self.probe.astype(np.complex64)
        if self.scan_index.shape != (n,):
            raise self._fail("scan_index", f"shape ({n},)", f"shape {self.scan_index.shape}")
        if self.object is not None:
            obj = np.asarray(self.object)
            if obj.ndim != 2:
                raise self._fail("objectGuess", "a complex 2-D array", f"shape {obj.shape}")
            if not np.all(np.isfinite(obj)):
                raise self._fail("objectGuess", "finite values", "NaN/inf")
            self.object = obj.astype(np.complex64)
            self.check_positions_inside_object()

    def check_positions_inside_object(self) -> None:
        """Every patch centre must lie inside the object grid (half a patch of margin is not required)."""
        h, w = self.object.shape
        x, y = self.x, self.y
        outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise self._fail(
                "xcoords/ycoords",
                f"positions inside the object grid (x in [0, {w - 1}], y in [0, {h - 1}])",
                f"{int(outside.sum())} outside, e.g. #{i} at (x={x[i]:.1f}, y={y[i]:.1f})",
            )


def counts_to_amplitudes(counts: np.ndarray, source: str = "<memory>", key: str = "diff3d") -> np.ndarray:
    """Convert photon counts (any real dtype, e.g. uint16) to float32 amplitudes via float64 sqrt."""
    counts = np.asarray(counts)
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise ScanDataError(f"{source}: '{key}': expected real-valued counts, got dtype {counts.dtype}")
    c64 = counts.astype(np.float64)
    if not np.all(np.isfinite(c64)):
        raise ScanDataError(f"{source}: '{key}': expected finite counts, got NaN/inf values")
    if np.any(c64 < 0):
        raise ScanDataError(f"{source}: '{key}': expected non-negative counts, got minimum {c64.min()}")
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
