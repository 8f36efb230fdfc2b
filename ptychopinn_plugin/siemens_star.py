"""The real Siemens-star scan (`siemens-star-small.npz.bz2`, tike test data, Velociprobe/APS) as ScanData.

File (bz2-compressed NPZ): `data` float32 (1, n, N, N) photon counts with zero frequency at the
array corner; `probe` complex64 (1, 1, 1, 1, N, N), arbitrary scale; `scan` float32 (1, n, 2)
positions in object pixels, column 0 = y (vertical), column 1 = x. No energy, distance or pixel
sizes are recorded.

The scan becomes: amplitudes = sqrt(fftshift(counts)) (zero frequency at the centre); positions
shifted by whole pixels onto an object grid that covers every patch with N/2 + `margin_px` pixels
of margin (`product.covering_grid`); object = ones on that grid (an initial guess, NOT ground truth:
the file has none). Convert it with `ptychopinn convert siemens-star-small.npz.bz2 star/`.
"""

from __future__ import annotations

import bz2
import io
import os

import numpy as np

from ptycho.scan import ScanData, ScanDataError, ScanMetadata, counts_to_amplitudes, first_probe_mode

from .product import covering_grid

DEFAULT_MARGIN_PX = 8
_KEYS = {"data": 4, "probe": 6, "scan": 3}  # key -> expected rank


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """Decompress the file into memory (about 34 MB) and read its three arrays (never unpickling)."""
    try:
        with bz2.open(path, "rb") as f:
            buffer = io.BytesIO(f.read())
        with np.load(buffer, allow_pickle=False) as npz:
            missing = sorted(set(_KEYS) - set(npz.files))
            if missing:
                raise ScanDataError(f"{path}: '{missing[0]}': expected this key to be present, "
                                    f"got keys {sorted(npz.files)}")
            arrays = {key: npz[key] for key in _KEYS}
    except (FileNotFoundError, ScanDataError):
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise ScanDataError(f"{path}: not a bz2-compressed NPZ archive ({type(exc).__name__}: {exc})") from exc
    for key, rank in _KEYS.items():
        if arrays[key].ndim != rank:
            raise ScanDataError(f"{path}: '{key}': expected {rank} dimensions, got shape {arrays[key].shape}")
    return arrays


def load_siemens_star(path: str | os.PathLike[str], *, margin_px: int = DEFAULT_MARGIN_PX) -> ScanData:
    """Read the Siemens-star file into a ScanData on an object grid of ones (see the module docstring)."""
    source = os.fspath(path)
    arrays = _read_arrays(source)
    counts = np.fft.fftshift(arrays["data"][0], axes=(-2, -1))
    yx = arrays["scan"][0].astype(np.float64)
    if yx.shape != (counts.shape[0], 2):
        raise ScanDataError(f"{source}: 'scan': expected shape (1, {counts.shape[0]}, 2) (one (y, x) per pattern), "
                            f"got {arrays['scan'].shape}")
    positions = yx[:, ::-1].copy()
    shift, shape = covering_grid(positions, counts.shape[-1], margin_px)
    amplitudes = counts_to_amplitudes(counts, source, "data")
    return ScanData(
        amplitudes=amplitudes,
        positions=positions + shift,
        probe=first_probe_mode(arrays["probe"], source, "probe"),
        object=np.ones(shape, dtype=np.complex64),
        metadata=ScanMetadata(
            nphotons=float(np.mean(np.sum(counts, axis=(1, 2), dtype=np.float64))),
            name="siemens-star-small",
        ),
        source=source,
    )
