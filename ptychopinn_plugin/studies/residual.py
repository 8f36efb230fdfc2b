"""Data residual without ground truth: how well a reconstruction explains the measured counts.

For an object and a probe (our conventions), the forward model `ptycho.physics.diffraction_amplitudes`
predicts counts lambda = s * |fftshift(fft2(probe * patch, norm='ortho'))|^2 at every scan position.
The global intensity scale s is fitted (its Poisson maximum-likelihood value sum(counts) /
sum(lambda / s)), so methods whose object and probe split the overall scale differently compare
fairly. The residual is the mean Poisson deviance per detector pixel,
    lambda - n + n * log(n / lambda)   (n = measured counts; n log n / lambda = 0 where n = 0),
the Poisson negative log-likelihood minus that of a perfect prediction: 0 for a perfect fit, about 0.5
per pixel for a perfect model at moderate counts (noise).
"""

from __future__ import annotations

import numpy as np

from ptycho.scan import ScanData

EPSILON = 1e-12
"""Floor of predicted counts (a zero prediction of a non-zero count would be infinitely unlikely)."""


def interior_patterns(scan: ScanData, weights: np.ndarray, *more_weights: np.ndarray) -> np.ndarray:
    """Indices of the patterns whose whole N x N patch (plus one pixel for sub-pixel positions) lies
    where every coverage map is > 0.

    weights: float (H, W) coverage maps on the scan's object grid (e.g. `Reconstruction.weights`);
    a reconstruction is only defined where it is covered, so only these patterns are compared.
    """
    covered = np.logical_and.reduce([np.asarray(w) > 0 for w in (weights, *more_weights)])
    height, width = covered.shape
    side = scan.N + 1
    keep = []
    for index, (x, y) in enumerate(np.floor(scan.positions).astype(int)):
        top, left = y - scan.N // 2, x - scan.N // 2
        if (top >= 0 and left >= 0 and top + side <= height and left + side <= width
                and covered[top:top + side, left:left + side].all()):
            keep.append(index)
    return np.asarray(keep, dtype=np.int64)


def poisson_deviance(scan: ScanData, obj: np.ndarray, probe: np.ndarray, patterns: np.ndarray | None = None
                     ) -> float:
    """Mean Poisson deviance per pixel of the measured counts given obj (H, W) and probe (N, N).

    obj must lie on the scan's object grid (its positions index it); patterns: indices to use (all by
    default). See the module docstring for the fitted scale and the definition.
    """
    from ptycho import physics

    indices = np.arange(scan.n_patterns) if patterns is None else np.asarray(patterns)
    if len(indices) == 0:
        raise ValueError(f"{scan.source}: no patterns to compute a data residual on")
    predicted = np.square(physics.diffraction_amplitudes(obj, probe, scan.positions[indices]), dtype=np.float64)
    measured = np.square(scan.amplitudes[indices], dtype=np.float64)
    total = float(predicted.sum())
    if not total > 0:
        raise ValueError("poisson_deviance: the reconstruction predicts no counts at all")
    predicted = np.maximum(predicted * (float(measured.sum()) / total), EPSILON)
    log_ratio = np.log(np.where(measured > 0, measured, 1.0) / predicted)
    return float(np.mean(predicted - measured + np.where(measured > 0, measured * log_ratio, 0.0)))
