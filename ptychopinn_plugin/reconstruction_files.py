"""Reconstruction files: write an object as NPZ or product HDF5 (+ PNG), and read either back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ptycho.atomic import atomic_output
from ptycho.npz_io import load_reconstruction_npz
from ptycho.scan import ScanData
from ptychopinn_plugin import figures
from ptychopinn_plugin.convert import write_reconstruction_product
from ptychopinn_plugin.product_hdf5 import read_product


def write_reconstruction(path: str | os.PathLike[str], scan: ScanData, obj: np.ndarray, weights: np.ndarray, *,
                         losses: Sequence[tuple[int, float]] = (), input_product=None) -> list[Path]:
    """Write `obj` (complex (H, W) on the scan's object grid, origin (0, 0)) to `path`: a Ptychodus
    product when it ends in .h5/.hdf5, an NPZ (keys object, weights, xcoords, ycoords, probe,
    loss_epochs, loss_values) when .npz; plus an amplitude/phase PNG beside it. Returns the paths."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        write_reconstruction_product(path, scan, obj, losses=losses, input_product=input_product)
    elif suffix == ".npz":
        epochs = np.array([e for e, _ in losses], np.int64)
        values = np.array([v for _, v in losses], np.float64)
        with atomic_output(path, suffix=".npz") as tmp:
            np.savez(tmp, object=obj.astype(np.complex64), weights=weights, xcoords=scan.x, ycoords=scan.y,
                     probe=scan.probe, loss_epochs=epochs, loss_values=values)
    else:
        raise ValueError(f"{path}: unsupported output (expected .h5/.hdf5 for a Ptychodus product or .npz)")
    png = figures.object_image(obj, path.with_suffix(".png"), title=path.name, mask=weights > 0)
    return [path, png]


def read_reconstruction(path: str | os.PathLike[str]) -> np.ndarray:
    """The complex object (H, W) of a reconstruction NPZ or product HDF5 (first layer)."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return read_product(path).object[0]
    if path.suffix.lower() == ".npz":
        return load_reconstruction_npz(path).object
    raise ValueError(f"{path}: unsupported reconstruction (expected .npz or .h5)")
