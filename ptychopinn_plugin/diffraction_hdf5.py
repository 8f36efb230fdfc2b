"""Ptychodus assembled-diffraction HDF5 files (`ptychodus.api.io.save_diffraction_data`, 1.7), h5py only.

Layout (root, lzf-compressed like Ptychodus): `indexes` (int (n,)), `patterns` (photon COUNTS
(n, H, W), any real dtype, zero frequency at the centre; attributes `detector_pixel_width_m`,
`detector_pixel_height_m`), `bad_pixels` (bool (H, W), True = bad), optional `probe_photon_counts`
(float (n,)).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .product import format_error
from ptycho.atomic import atomic_output

from .product_hdf5 import float_attribute, get_dataset, open_hdf5, read_dataset


@dataclass
class DiffractionData:
    """Assembled diffraction data.

    counts: (n, H, W) photon counts (intensity, not amplitude), real dtype kept as given.
    indexes: int64 (n,), scan index of each pattern (pairs it with the product's position indexes).
    bad_pixels: bool (H, W), True where the detector pixel is bad.
    detector_pixel_width_m / _height_m: detector pixel size in metres.
    probe_photon_counts: optional float64 (n,) measured photons per pattern.
    """

    counts: np.ndarray
    indexes: np.ndarray
    bad_pixels: np.ndarray
    detector_pixel_width_m: float
    detector_pixel_height_m: float
    probe_photon_counts: np.ndarray | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise PtychodusFormatError naming the source and key for any inconsistency."""
        src = self.source
        counts = np.asarray(self.counts)
        if counts.ndim != 3:
            raise format_error(src, "patterns", "counts of shape (n, height, width)", f"shape {counts.shape}")
        if counts.dtype.kind not in "iuf":
            raise format_error(src, "patterns", "real-valued counts", f"dtype {counts.dtype}")
        n = counts.shape[0]
        indexes = np.asarray(self.indexes)
        if indexes.shape != (n,) or (indexes.size and indexes.dtype.kind not in "iu"):
            raise format_error(src, "indexes", f"{n} integers (one per pattern)",
                               f"shape {indexes.shape}, dtype {indexes.dtype}")
        bad = np.asarray(self.bad_pixels)
        if bad.shape != counts.shape[1:] or bad.dtype != np.bool_:
            raise format_error(src, "bad_pixels", f"a bool mask of shape {counts.shape[1:]}",
                               f"shape {bad.shape}, dtype {bad.dtype}")
        for key in ("detector_pixel_width_m", "detector_pixel_height_m"):
            value = getattr(self, key)
            if not isinstance(value, (int, float, np.number)) or not (math.isfinite(value) and value > 0):
                raise format_error(src, f"patterns/{key}", "a pixel size > 0 in metres", repr(value))
            setattr(self, key, float(value))
        if self.probe_photon_counts is not None:
            photons = np.asarray(self.probe_photon_counts)
            if photons.shape != (n,) or photons.dtype.kind not in "iuf" or not np.all(np.isfinite(photons)):
                raise format_error(src, "probe_photon_counts", f"{n} finite numbers (one per pattern)",
                                   f"shape {photons.shape}, dtype {photons.dtype}")
            self.probe_photon_counts = photons.astype(np.float64, copy=False)
        self.counts, self.indexes, self.bad_pixels = counts, indexes.astype(np.int64, copy=False), bad


def read_diffraction(path: str | os.PathLike[str]) -> DiffractionData:
    """Read a Ptychodus `diffraction.h5`; errors name the file and the key."""
    source = str(path)
    with open_hdf5(path) as h5:
        def dataset(key: str, ndim: int, kinds: str, expected: str, required: bool = True) -> np.ndarray | None:
            node = get_dataset(h5, key, source=source, ndim=(ndim,), kinds=kinds, expected=expected, required=required)
            return None if node is None else read_dataset(node, source=source)

        patterns = get_dataset(h5, "patterns", source=source, ndim=(3,), kinds="iuf",
                               expected="real counts of shape (n, height, width)")
        pixel = {key: float_attribute(patterns.attrs, (key,), source=f"{source}: 'patterns'", default=None)
                 for key in ("detector_pixel_width_m", "detector_pixel_height_m")}
        return DiffractionData(
            counts=read_dataset(patterns, source=source),
            indexes=dataset("indexes", 1, "iu", "a 1-D integer array"),
            bad_pixels=dataset("bad_pixels", 2, "b", "a bool (height, width) mask"),
            probe_photon_counts=dataset("probe_photon_counts", 1, "iuf", "a real 1-D array", required=False),
            source=source,
            **pixel,
        )


def write_diffraction(path: str | os.PathLike[str], data: DiffractionData, *, compression: str | None = "lzf") -> Path:
    """Write `data` atomically in the layout of `ptychodus.api.io.save_diffraction_data`."""
    data.validate()
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("indexes", data=data.indexes, compression=compression)
        patterns = h5.create_dataset("patterns", data=data.counts, compression=compression)
        patterns.attrs["detector_pixel_width_m"] = data.detector_pixel_width_m
        patterns.attrs["detector_pixel_height_m"] = data.detector_pixel_height_m
        h5.create_dataset("bad_pixels", data=data.bad_pixels, compression=compression)
        if data.probe_photon_counts is not None:
            h5.create_dataset("probe_photon_counts", data=data.probe_photon_counts, compression=compression)
    return path
