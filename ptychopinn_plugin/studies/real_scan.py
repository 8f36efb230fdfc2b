"""Reducing a measured scan to a study's scale, and the simulated twin that trains a supervised model.

Cropping the detector to its central n x n pixels is exact resampling, not an approximation of the
data: the far field keeps the frequencies |k| < n/2 of the exit wave, i.e. the same scan seen with
object pixels N/n times larger (the field of view of a pattern stays the same). So:
- amplitudes: the central n x n of each pattern (zero frequency at N//2 -> n//2);
- probe: ifft2(crop(fft2(probe))) (ortho, centred), which carries the factor N/n that keeps
  counts = |fftshift(fft2(probe' * patch', norm='ortho'))|^2;
- positions: (x, y) * n / N, then shifted by whole pixels onto a fresh covering object grid of ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from ptycho.scan import ScanData
from ptycho.simulate import SimulationConfig

from ..product import covering_grid
from ..siemens_star import DEFAULT_MARGIN_PX


def crop_detector(scan: ScanData, n: int) -> ScanData:
    """The scan with its patterns cropped to the central n x n pixels (see the module docstring).

    n: even, 4 <= n <= N; n == N returns the scan unchanged. The object becomes ones on a grid that
    covers every patch (so do not crop a scan whose object is ground truth).
    """
    big_n = scan.N
    if n == big_n:
        return scan
    if not (isinstance(n, int) and n % 2 == 0 and 4 <= n < big_n):
        raise ValueError(f"{scan.source}: detector crop: expected an even size in [4, {big_n}], got {n!r}")
    start = (big_n - n) // 2
    amplitudes = scan.amplitudes[:, start:start + n, start:start + n]
    spectrum = np.fft.fftshift(np.fft.fft2(scan.probe.astype(np.complex128), norm="ortho"))
    probe = np.fft.ifft2(np.fft.ifftshift(spectrum[start:start + n, start:start + n]), norm="ortho")
    positions = scan.positions * (n / big_n)
    shift, shape = covering_grid(positions, n, DEFAULT_MARGIN_PX)
    metadata = dataclasses.replace(scan.metadata, extra={**scan.metadata.extra, "detector_crop": f"{big_n}->{n}"})
    metadata.nphotons = float(np.mean(np.einsum("nij,nij->n", amplitudes, amplitudes, dtype=np.float64)))
    if metadata.object_pixel_size_m is not None:
        metadata.object_pixel_size_m *= big_n / n
    return dataclasses.replace(scan, amplitudes=amplitudes, positions=positions + shift,
                               probe=probe.astype(np.complex64), object=np.ones(shape, np.complex64),
                               metadata=metadata)


def central_patterns(scan: ScanData, count: int) -> ScanData:
    """The `count` patterns nearest the scan's centre (a compact field of view); all when count >= n."""
    if count >= scan.n_patterns:
        return scan
    if count < 1:
        raise ValueError(f"{scan.source}: expected at least 1 pattern, got {count}")
    centre = 0.5 * (scan.positions.min(axis=0) + scan.positions.max(axis=0))
    nearest = np.argsort(np.hypot(*(scan.positions - centre).T), kind="stable")[:count]
    return scan.subset(np.sort(nearest))


def scan_step(scan: ScanData) -> float:
    """The median distance from each position to its nearest neighbour (object pixels)."""
    if scan.n_patterns < 2:
        raise ValueError(f"{scan.source}: a scan step needs at least two positions")
    distances, _ = cKDTree(scan.positions).query(scan.positions, k=2)
    return float(np.median(distances[:, 1]))


def simulated_twin(scan: ScanData, seed: int, object_kind: str = "lines") -> SimulationConfig:
    """A simulation with a measured scan's probe, dose, pattern count and scan step, for training
    models that need ground truth (the supervised baseline) to be applied to the measured scan."""
    return SimulationConfig(object_kind=object_kind, N=scan.N, n_images=scan.n_patterns, step=scan_step(scan),
                            probe_kind="array", probe_array=scan.probe,
                            nphotons=float(scan.counts_per_pattern.mean()), seed=seed)
