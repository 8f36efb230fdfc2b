"""Grouped network inputs for the Ptychodus 1.7 compatibility facade (TensorFlow-free).

`load(...)` turns the `GroupedData` of `RawData.generate_grouped_data` into a `PtychoDataContainer`:
  X               float32 (g, N, N, C) = measured amplitudes / intensity_scale, so that
                  `X * params.cfg['intensity_scale']` are the raw amplitudes the core models take
  local_offsets   float64 (g, C, 2) member position minus group centroid (x, y), object pixels
  global_offsets  float64 (g, C, 2) ABSOLUTE member positions (x, y), object pixels: for gridsize 1 the
                  group centroid (the legacy meaning); for gridsize > 1 each member's own position,
                  which `tf_helper.reassemble_position` needs to place every channel's patch
It also records the data's object grid in `params.cfg['object_shape']` (the grid the reassembled
object is stitched onto).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ptycho import params
from ptycho.raw_data import GroupedData
from ptycho.scan import first_probe_mode


@dataclass(frozen=True)
class PtychoDataContainer:
    """Network inputs of grouped scan data (shapes in the module docstring)."""

    X: np.ndarray
    local_offsets: np.ndarray
    global_offsets: np.ndarray
    indices: np.ndarray
    probe: np.ndarray
    object_shape: tuple[int, int] | None
    intensity_scale: float

    @property
    def n_groups(self) -> int:
        return int(self.X.shape[0])


def load(cb: Callable[[], GroupedData], probeGuess: np.ndarray,
         which: str | None = None, create_split: bool = False) -> PtychoDataContainer:
    """Build the container from `cb()`, normalising by `params.cfg['intensity_scale']`.

    probeGuess: complex (N, N) or (modes, N, N) (first mode kept).
    which / create_split: legacy train/test splitting; only which=None, create_split=False is supported.
    Raises RuntimeError when no intensity scale is set (load or train a model first).
    """
    if which is not None or create_split:
        raise ValueError(f"loader.load: splitting is not supported (got which={which!r}, "
                         f"create_split={create_split!r}); pass which=None, create_split=False")
    grouped = cb()
    if not isinstance(grouped, GroupedData):
        raise TypeError(f"loader.load: expected cb() to return the GroupedData of "
                        f"RawData.generate_grouped_data, got {type(grouped).__name__}")
    try:
        intensity_scale = float(params.get("intensity_scale"))
    except KeyError:
        raise RuntimeError("loader.load: no intensity scale: load a model (load_inference_bundle) or "
                           "train one (run_cdi_example) first") from None
    params.cfg["object_shape"] = grouped.object_shape
    return PtychoDataContainer(
        X=(grouped.diffraction / np.float32(intensity_scale)).astype(np.float32),
        local_offsets=grouped.local_offsets,
        global_offsets=grouped.positions,
        indices=grouped.indices,
        probe=first_probe_mode(probeGuess, "loader.load", "probeGuess"),
        object_shape=grouped.object_shape,
        intensity_scale=intensity_scale,
    )
