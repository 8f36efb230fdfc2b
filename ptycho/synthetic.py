"""Synthetic training patterns through a measured scan's own probe (physics-informed augmentation).

A PINN trained on one scan learns the inverse of the physics from that scan's patterns only; on
patterns it has not seen, its amplitude in particular generalises poorly when the scan is small
(docs/quality.md). `with_synthetic_patterns` adds patterns of a *generated* object (a Gaussian random
field by default) simulated with the measured probe, at the measured scan's mean counts per pattern
(Poisson noise) and scan step. They go through the same physics and loss as the measured ones, need
no ground truth, and are grouped on their own (no group mixes measured and synthetic patterns).
They are held in memory (4 N^2 bytes each), also when the measured scan is streamed from disk.

The object may also be a *reconstruction* (an NPZ written by `ptychopinn infer`, e.g. of the training
scan itself by a first model): its well-covered region is cut into randomly turned and mirrored pieces
(`ptycho.mosaic`), so the new patterns show the sample's own features in new arrangements.

Assumption: the synthetic object transmits, on average, as much as the sample (its mean counts are
matched to the measured ones). Generated objects have amplitude 0.5..1 and phase -1..1 rad.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ptycho.config.config import SYNTHETIC_OBJECTS
from ptycho.datasource import ScanSource
from ptycho.grouping import Groups, group_positions
from ptycho.metrics import covered_region
from ptycho.mosaic import check_source, mosaic_object
from ptycho.npz_io import load_reconstruction_npz
from ptycho.scan import ScanData

SCAN_JITTER = 0.25
"""Jitter of the synthetic raster scan, as a fraction of its step (`ptycho.simulate` 'jittered')."""

SYNTHETIC_STREAM = 0x5E17
"""Key that separates the synthetic scan's random stream from `ptycho.simulate`'s for the same seed: a
training seed s never regenerates the object (or scan) that `simulate(seed=s)` made, which would leak a
simulated scan's held-out region into its synthetic training patterns."""


def synthetic_seed(seed: int) -> int:
    """The simulation seed of the synthetic scan for training seed `seed` (deterministic, independent of
    `SimulationConfig(seed=seed)`'s streams)."""
    return int(np.random.SeedSequence([seed, SYNTHETIC_STREAM]).generate_state(1)[0])


def scan_step(positions: np.ndarray) -> float:
    """The raster pitch (object pixels) of a scan's density: sqrt(area of the positions' convex hull /
    number of positions), or, for a scan along a line, the median nearest-neighbour distance."""
    positions = np.asarray(positions, np.float64)
    try:
        step = math.sqrt(ConvexHull(positions).volume / len(positions))
    except QhullError:  # fewer than 3 positions, or all on one line
        distances, _ = cKDTree(positions).query(positions, k=2)
        step = float(np.median(distances[:, 1]))
    if not step > 0:
        raise ValueError("positions: the scan step is 0: every position repeats")
    return step


def synthetic_scan(probe: np.ndarray, n_patterns: int, object_kind: str, *, step: float, mean_counts: float,
                   seed: int) -> ScanData:
    """Simulate n_patterns of a generated object ('grf', 'lines', 'points'), of a PNG image (a path) or of
    a mosaic of a reconstruction NPZ (a path ending in .npz; `reconstruction_region`, `mosaic_object`)
    through `probe` (complex (N, N), any scale) on a jittered raster of pitch `step` pixels, scaled to
    `mean_counts` total counts per pattern with Poisson noise. The returned probe is `probe` rescaled
    to the counts (as `ptycho.simulate.simulate` returns it); the object is the generated ground truth.
    seed: the training seed; the simulation runs with `synthetic_seed(seed)`.
    """
    from ptycho.simulate import SimulationConfig, place_scan, simulate

    n = probe.shape[-1]
    simulation_seed = synthetic_seed(seed)
    is_file = object_kind not in SYNTHETIC_OBJECTS
    config = SimulationConfig(
        object_kind="image" if is_file else object_kind, image=object_kind if is_file else None, N=n,
        n_images=n_patterns, step=step, jitter=SCAN_JITTER, probe_kind="array", probe_array=probe,
        nphotons=mean_counts, seed=simulation_seed)
    # an image is resized to the object the scan needs (its extreme jittered positions, as place_scan does)
    n_cols = math.ceil(math.sqrt(n_patterns))
    n_rows = math.ceil(n_patterns / n_cols)
    corners = np.array([[-SCAN_JITTER, -SCAN_JITTER], [n_cols - 1 + SCAN_JITTER, n_rows - 1 + SCAN_JITTER]]) * step
    config.object_size = place_scan(corners, n, margin=config.margin)[1]
    if is_file and is_reconstruction_file(object_kind):
        config.image = mosaic_object(reconstruction_region(object_kind), config.object_size,
                                     np.random.default_rng(simulation_seed))
    return simulate(config)


def is_reconstruction_file(path: str) -> bool:
    """Whether a synthetic_object path names a reconstruction NPZ (by its suffix; else a PNG image)."""
    return Path(path).suffix.lower() == ".npz"


def reconstruction_region(path: str | os.PathLike[str]) -> np.ndarray:
    """The complex object of a reconstruction NPZ (`ptychopinn infer -o OUT.npz`) in the region where the
    central N/2 x N/2 parts of its patches cover every pixel (`ptycho.metrics.covered_region`).
    Raises ScanDataError for a bad file and ValueError, naming the file, for a region too small for
    `ptycho.mosaic` pieces."""
    reconstruction = load_reconstruction_npz(path)
    rows, cols = covered_region(reconstruction.positions, reconstruction.probe.shape[-1], reconstruction.object.shape)
    region = reconstruction.object[rows, cols]
    try:
        check_source(region)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: covered region: {exc}") from exc
    return region


def check_synthetic_object(object_kind: str) -> None:
    """Fail now, with an error naming the file, for a synthetic object file that `synthetic_scan` could
    not use (a reconstruction NPZ, or a PNG image); generated kinds always work."""
    if object_kind in SYNTHETIC_OBJECTS:
        return
    if is_reconstruction_file(object_kind):
        reconstruction_region(object_kind)
    else:
        from ptycho.simulate import load_image

        load_image(object_kind)


class CombinedSource:
    """A measured ScanSource followed by an in-memory synthetic ScanData: indices below
    `measured.n_patterns` read the measured patterns, the rest the synthetic ones. Positions are
    concatenated (each part in its own object frame: group each part on its own); probe and metadata
    are the measured scan's; there is no common ground-truth object."""

    def __init__(self, measured: ScanSource, synthetic: ScanData) -> None:
        if synthetic.N != measured.N:
            raise ValueError(f"synthetic patterns: expected {measured.N} x {measured.N}, got {synthetic.N} x {synthetic.N}")
        self.measured = measured
        self.synthetic = synthetic
        self.source = f"{measured.source} + {synthetic.n_patterns} synthetic patterns"
        self.positions = np.concatenate([measured.positions, synthetic.positions])
        self.probe = measured.probe
        self.object = None
        self.metadata = measured.metadata

    @property
    def n_patterns(self) -> int:
        return self.measured.n_patterns + self.synthetic.n_patterns

    @property
    def N(self) -> int:
        return self.measured.N

    def read_amplitudes(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        first = self.measured.n_patterns
        out = np.empty((len(indices), self.N, self.N), np.float32)
        is_measured = indices < first
        if is_measured.any():
            out[is_measured] = self.measured.read_amplitudes(indices[is_measured])
        if not is_measured.all():
            out[~is_measured] = self.synthetic.amplitudes[indices[~is_measured] - first]
        return out


def with_synthetic_patterns(source: ScanSource, *, n_patterns: int, object_kind: str, mean_counts: float,
                            gridsize: int, n_neighbors: int, groups_per_position: int,
                            seed: int) -> tuple[CombinedSource, Groups]:
    """`source` followed by n_patterns synthetic patterns (`synthetic_scan` with the source's probe,
    scan step and `mean_counts`), and the synthetic patterns' own groups (grouped as the measured
    ones are), whose member indices point into the combined source."""
    synthetic = synthetic_scan(source.probe, n_patterns, object_kind, step=scan_step(source.positions),
                               mean_counts=mean_counts, seed=seed)
    groups = group_positions(synthetic.positions, gridsize, n_neighbors=n_neighbors,
                             groups_per_position=groups_per_position, seed=seed)
    offset = source.n_patterns
    return CombinedSource(source, synthetic), Groups(groups.indices + offset, groups.global_offsets,
                                                      groups.local_offsets)
