"""`reassemble_position` of the Ptychodus 1.7 compatibility facade (TensorFlow-free despite the name).

Ptychodus stores the returned object with the INPUT object's centre and pixel size, so the object is
stitched onto the input object's pixel grid: the same shape (`params.cfg['object_shape']`, recorded
by `loader.load`) and origin (0, 0), i.e. pixel [r, c] of the result is pixel [r, c] of the input.
The stitching is the core's `ptycho.stitching.stitch_patches` (bilinear splatting of each patch's
central region, weighted mean where regions overlap, 0 where no patch reaches). As in the core's
inference, patch pixels are weighted by the model probe's intensity, which
`workflows.components.load_inference_bundle` and `run_cdi_example` record in
`params.cfg['stitch_weight']`; without a record (or for another patch size) the weights are equal.

Kept region: legacy callers pass `M`, the side of the central crop of each patch (Ptychodus 1.7
passes M = 20, a value chosen for N = 64). The facade keeps max(M, N // 2) pixels (at most N): never
less than the core's default N / 2, the well-illuminated centre that a ptychographic scan's overlap
is designed around, so a small legacy M cannot open gaps between neighbouring positions that the
core's own reconstruction covers.
"""

from __future__ import annotations

import numpy as np

from ptycho import params
from ptycho.stitching import default_keep, stitch_patches


def kept_size(M: int, N: int) -> int:
    """Side of the central region stitched from each N x N patch for a legacy crop size M."""
    return min(N, max(int(M), default_keep(N)))


def reassemble_position(obj_tensor: np.ndarray, global_offsets: np.ndarray, M: int = 20) -> np.ndarray:
    """Stitch predicted object patches into one complex object.

    obj_tensor: complex (g, N, N, C) patches (`InferenceModel.predict`'s output); (g, N, N) when C = 1.
    global_offsets: float (g, C, 2) absolute positions (x, y) in object pixels of every patch (the
        loader's `.global_offsets`); (g, 2) is accepted when C = 1.
    M: legacy central crop size; the kept side is `kept_size(M, N)` (module docstring).
    Returns complex64 (H, W) on the grid `params.cfg['object_shape']` with origin (0, 0) when that is
    set, else on the smallest canvas covering every kept region; patch pixels weighted by
    `params.cfg['stitch_weight']` when it is (N, N).
    """
    patches = np.asarray(obj_tensor)
    if patches.ndim == 3:
        patches = patches[..., np.newaxis]
    if patches.ndim != 4 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"reassemble_position: obj_tensor: expected complex patches of shape (g, N, N, C), "
                         f"got {patches.shape}")
    g, n, _, c = patches.shape
    positions = np.asarray(global_offsets, dtype=np.float64)
    if c == 1 and positions.shape == (g, 2):
        positions = positions[:, np.newaxis, :]
    if positions.shape != (g, c, 2):
        raise ValueError(f"reassemble_position: global_offsets: expected absolute positions of shape "
                         f"({g}, {c}, 2) (one (x, y) per patch), got {positions.shape}")
    shape = params.cfg.get("object_shape")
    weight = params.cfg.get("stitch_weight")
    if weight is not None and np.shape(weight) != (n, n):
        weight = None  # recorded for a model of another pattern size
    stitched = stitch_patches(patches.transpose(0, 3, 1, 2), positions,
                              shape=None if shape is None else tuple(shape),
                              origin=None if shape is None else (0.0, 0.0),
                              keep=kept_size(M, n), weight=weight)
    return stitched.image
