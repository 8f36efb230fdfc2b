"""`RawData`, the scan type of legacy PtychoPINN, as a thin view of `ptycho.scan.ScanData`.

Part of the Ptychodus 1.7 compatibility facade (docs/ptychodus.md); TensorFlow-free. A RawData wraps
one validated ScanData (`.scan`) and exposes it under the legacy names:
  xcoords, ycoords (= xcoords_start, ycoords_start)  float64 (n,) object-pixel coordinates (x, y)
  diff3d       float32 (n, N, N) diffraction AMPLITUDES = sqrt(counts) (the legacy meaning)
  probeGuess   complex64 (N, N), the first probe mode
  objectGuess  complex64 (H, W) or None
  scan_index   int64 (n,)
Ptychodus hands over photon COUNTS; `from_coords_without_pc` converts them to amplitudes with the
core's `counts_to_amplitudes` (float64 square root, so uint16 counts near 65535 are exact).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ptycho import params
from ptycho.config.config import ConfigError, check_neighbors
from ptycho.grouping import cover_positions
from ptycho.npz_io import load_scan_npz
from ptycho.scan import ScanData, ScanDataError, counts_to_amplitudes, first_probe_mode
from ptycho.workflows import reports_errors

PTYCHODUS_SOURCE = "Ptychodus input"
"""The `source` named in error messages about data handed over by Ptychodus."""


@dataclass(frozen=True)
class GroupedData:
    """Scan patterns grouped for a network with C = gridsize**2 input channels.

    diffraction: float32 (g, N, N, C) measured AMPLITUDES of each group's members.
    local_offsets: float64 (g, C, 2) member position minus group centroid (x, y), object pixels.
    positions: float64 (g, C, 2) absolute member positions (x, y), object pixels.
    indices: int64 (g, C) pattern indices of the members (column 0: the anchor).
    probe: complex64 (N, N); object_shape: (H, W) of the scan's object grid, or None.
    """

    diffraction: np.ndarray
    local_offsets: np.ndarray
    positions: np.ndarray
    indices: np.ndarray
    probe: np.ndarray
    object_shape: tuple[int, int] | None


class RawData:
    """A scan under the legacy PtychoPINN attribute names (see the module docstring)."""

    def __init__(self, scan: ScanData) -> None:
        self.scan = scan

    @property
    def xcoords(self) -> np.ndarray:
        return self.scan.x

    @property
    def ycoords(self) -> np.ndarray:
        return self.scan.y

    xcoords_start = xcoords
    ycoords_start = ycoords

    @property
    def diff3d(self) -> np.ndarray:
        """float32 (n, N, N) diffraction amplitudes."""
        return self.scan.amplitudes

    @property
    def probeGuess(self) -> np.ndarray:
        return self.scan.probe

    @property
    def objectGuess(self) -> np.ndarray | None:
        return self.scan.object

    @property
    def scan_index(self) -> np.ndarray:
        return np.asarray(self.scan.scan_index, dtype=np.int64)  # never None once validated

    @classmethod
    @reports_errors
    def from_coords_without_pc(
        cls,
        xcoords: np.ndarray,
        ycoords: np.ndarray,
        diff3d: np.ndarray,
        probeGuess: np.ndarray,
        scan_index: np.ndarray,
        objectGuess: np.ndarray | None = None,
        *,
        source: str = PTYCHODUS_SOURCE,
    ) -> RawData:
        """A RawData from Ptychodus' arrays.

        xcoords, ycoords: float (n,) object-pixel coordinates; diff3d: (n, N, N) photon COUNTS, any real
        dtype (e.g. uint16, bad pixels already inpainted); probeGuess: complex (N, N) or (modes, N, N)
        (the first mode is used); scan_index: int (n,); objectGuess: complex (H, W) or None.
        Raises ScanDataError (a ValueError) naming `source` and the key for non-square patterns,
        NaN/inf or negative counts, mismatched lengths, a probe of the wrong size, or positions
        outside the object.
        """
        x, y = np.ravel(xcoords), np.ravel(ycoords)
        if x.shape != y.shape:
            raise ScanDataError(f"{source}: 'xcoords/ycoords': expected one x and one y per position, "
                                f"got {x.size} x and {y.size} y values")
        return cls(ScanData(
            amplitudes=counts_to_amplitudes(diff3d, source, "diff3d"),
            positions=np.stack([x, y], axis=1),
            probe=first_probe_mode(probeGuess, source, "probeGuess"),
            object=objectGuess,
            scan_index=np.ravel(scan_index),
            source=source,
        ))

    @classmethod
    @reports_errors
    def from_file(cls, train_data_file_path: str | os.PathLike[str]) -> RawData:
        """A RawData from a reference NPZ or Ptychodus' exported training data (`ptycho.npz_io`)."""
        return cls(load_scan_npz(train_data_file_path))

    @reports_errors
    def generate_grouped_data(self, N: int, K: int = 7, nsamples: int = 1,
                              gridsize: int | None = None) -> GroupedData:
        """Groups that cover the whole scan, as the core's inference makes them (`cover_positions`).

        N: the model's pattern size (must equal the data's).
        K: neighbours besides the anchor that a group's other members are drawn from (Ptychodus'
            NumNearestNeighbors); a group of C = gridsize**2 needs K >= C - 1.
        nsamples: every pattern is in at least this many groups (Ptychodus' NumSamples, default 1;
            the core's `passes`): the whole scan is reconstructed whatever its value.
        gridsize: default `params.cfg['gridsize']` (set by update_legacy_dict), else 1.
        """
        scan = self.scan
        if gridsize is None:
            gridsize = int(params.cfg.get("gridsize", 1))
        if N != scan.N:
            raise ScanDataError(f"{scan.source}: 'diff3d': the model size N = {N} does not match the "
                                f"{scan.N} x {scan.N} diffraction patterns")
        try:
            check_neighbors(K, gridsize)
        except ConfigError as exc:
            raise ConfigError(f"NumNearestNeighbors (K) = {K} does not suit GridSize = {gridsize}: {exc}") from None
        groups = cover_positions(scan.positions, gridsize, n_neighbors=K + 1, passes=nsamples)
        diffraction = scan.amplitudes[groups.indices].transpose(0, 2, 3, 1)
        return GroupedData(
            diffraction=np.ascontiguousarray(diffraction),
            local_offsets=groups.local_offsets,
            positions=scan.positions[groups.indices],
            indices=groups.indices,
            probe=scan.probe,
            object_shape=None if scan.object is None else tuple(scan.object.shape),
        )
