"""Exact training-data augmentation from the probe's mirror and 90-degree rotation symmetries.

Let g be a mirror or a rotation by a multiple of 90 degrees about the centre pixel (N/2, N/2) that
leaves the probe unchanged: probe(g u) = probe(u). Then for any object patch,

    | F(probe * patch o g^-1) | = | F(probe * patch) | o g^-1

with the centred FFT of docs/conventions.md (zero frequency at pixel N/2), because the FFT of an image
turned by an orthogonal g is the FFT turned by g. So a measured diffraction pattern turned by g is,
exactly, the pattern the same probe would give on the turned patch: a new, physically exact training
example at no simulation cost. In a group, the patches sit at `local_offsets`; the turned group is the
turned object, so the offsets turn as vectors by the same g.

An operation is a `DihedralOp`: transpose the image first (swap rows and columns), then mirror the rows,
then the columns. On an even N x N grid the mirror about pixel N/2 is index i -> (N - i) mod N.
The eight operations form the dihedral group of the square; `probe_symmetries` returns those under
which a given probe is unchanged (always at least the identity). Simulated probes (a disk or a
Gaussian with a radial phase, centred at N/2) have all eight; a measured probe usually only the identity.
"""

from __future__ import annotations

from itertools import product
from typing import NamedTuple

import numpy as np

from ptycho.config.config import ConfigError

PROBE_SYMMETRY_RTOL = 1e-4
"""Largest relative L2 change of the probe under an operation that still counts as a symmetry."""


class DihedralOp(NamedTuple):
    """transpose, then mirror rows (y), then mirror columns (x), about pixel N/2."""

    transpose: bool
    flip_y: bool
    flip_x: bool


DIHEDRAL_OPS: tuple[DihedralOp, ...] = tuple(DihedralOp(*flags) for flags in product((False, True), repeat=3))
"""The eight operations; the first is the identity."""


def _mirror(images: np.ndarray, axis: int) -> np.ndarray:
    """Mirror about index N/2 along `axis`: out[i] = images[(N - i) mod N]."""
    return np.roll(np.flip(images, axis=axis), 1, axis=axis)


def transform_images(images: np.ndarray, op: DihedralOp, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Apply op to images indexed [..., row, col, ...]; `axes` = (row axis, column axis), square N x N."""
    row, col = axes
    if op.transpose:
        images = np.swapaxes(images, row, col)
    if op.flip_y:
        images = _mirror(images, row)
    if op.flip_x:
        images = _mirror(images, col)
    return images


def transform_offsets(offsets: np.ndarray, op: DihedralOp) -> np.ndarray:
    """Apply op to (..., 2) offset vectors (x, y) in pixels, consistently with `transform_images`."""
    out = offsets[..., ::-1] if op.transpose else offsets
    sign = np.array([-1.0 if op.flip_x else 1.0, -1.0 if op.flip_y else 1.0], dtype=offsets.dtype)
    return out * sign


def inverse(op: DihedralOp) -> DihedralOp:
    """The operation that undoes op: a mirror is its own inverse; with a transpose, the mirrors swap axes."""
    return DihedralOp(op.transpose, op.flip_x, op.flip_y) if op.transpose else op


def probe_symmetries(probe: np.ndarray, rtol: float = PROBE_SYMMETRY_RTOL) -> tuple[DihedralOp, ...]:
    """The operations under which the complex (N, N) probe changes by at most rtol (relative L2 norm)."""
    probe = np.asarray(probe, dtype=np.complex128)
    norm = np.linalg.norm(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or norm == 0:
        raise ValueError(f"probe_symmetries: expected a non-zero square complex (N, N) probe, got shape {probe.shape}")
    return tuple(op for op in DIHEDRAL_OPS
                 if np.linalg.norm(transform_images(probe, op) - probe) <= rtol * norm)


def required_symmetries(probe: np.ndarray, setting: str, where: str) -> tuple[DihedralOp, ...]:
    """probe_symmetries(probe) for an option that needs more than the identity: ConfigError naming the
    setting and where the probe comes from (`where`) when the probe has no other symmetry."""
    symmetries = probe_symmetries(probe)
    if len(symmetries) == 1:
        raise ConfigError(f"{setting}: {where}: the probe has no mirror or 90-degree symmetry about pixel N/2 "
                          f"(within a relative change of {PROBE_SYMMETRY_RTOL:g}), so turned patterns would "
                          f"not be exact; set it to False")
    return symmetries


def turn_groups(turns: np.ndarray, ops: tuple[DihedralOp, ...], offsets: np.ndarray,
                *images: np.ndarray) -> tuple[np.ndarray, ...]:
    """Turn group b of a batch by ops[turns[b]].

    turns: int (B,) indices into ops; offsets: (B, C, 2) local offsets (x, y); images: any number of
    (B, N, N, C) arrays of the same groups (diffraction amplitudes, object patches), turned together.
    Returns (offsets, *images), new arrays.
    """
    offsets = offsets.copy()
    images = tuple(np.array(image) for image in images)
    for k, op in enumerate(ops):
        members = np.flatnonzero(turns == k)
        if len(members) == 0 or op == DIHEDRAL_OPS[0]:
            continue
        offsets[members] = transform_offsets(offsets[members], op)
        for image in images:
            image[members] = transform_images(image[members], op, axes=(1, 2))
    return (offsets, *images)
