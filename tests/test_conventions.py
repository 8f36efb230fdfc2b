"""Our conventions agree with the outside world: an independent simulator's scan is reproduced."""

from __future__ import annotations

import numpy as np

from ptycho import physics
from ptycho.npz_io import load_scan_npz


def test_forward_model_reproduces_independent_simulation(shared_data):
    scan = load_scan_npz(shared_data / "lines-1e9.npz")
    predicted = physics.diffraction_amplitudes(scan.object, scan.probe, scan.positions)
    relative_error = np.linalg.norm(predicted - scan.amplitudes) / np.linalg.norm(scan.amplitudes)
    print(f"relative amplitude error vs lines-1e9.npz: {relative_error:.5f}")
    assert relative_error < 0.005  # photon noise alone is ~0.001; a sign/centring error gives > 0.3
    # the counts scale matches: mean photons per pattern ~ 1e9
    predicted_counts = np.sum(predicted.astype(np.float64) ** 2, axis=(1, 2))
    np.testing.assert_allclose(predicted_counts.mean(), scan.counts_per_pattern.mean(), rtol=1e-3)
