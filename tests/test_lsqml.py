"""pty-chi's LSQML through `ptychopinn_plugin.studies.lsqml` (needs the `compare` extra: pty-chi + PyTorch).

The reconstruction of a tiny simulated scan must approach the ground truth on the scan's own grid:
no registration shift, no amplitude rescaling and a clearly better SSIM than the initial unit object.
Each convention (counts vs amplitudes, fftshift, probe / N, position origin and half-pixel offset)
breaks at least one of these when it is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import metrics
from ptycho.simulate import SimulationConfig, simulate
from ptychopinn_plugin.studies import lsqml
from ptychopinn_plugin.studies.lsqml import (
    LsqmlSettings,
    probe_on_data_scale,
    run_lsqml,
)


@pytest.fixture(scope="module")
def scan():
    return simulate(SimulationConfig(N=32, n_images=150, step=3.0, nphotons=1e8, seed=3))


@pytest.fixture(scope="module")
def region(scan):
    return metrics.scanned_region(scan.positions, scan.N, scan.object.shape)


def test_lsqml_recovers_the_truth_on_the_scan_grid(scan, region):
    result = run_lsqml(scan, LsqmlSettings(epochs=8, batch_size=32, device="cpu"))
    assert result.object.shape == scan.object.shape and result.object.dtype == np.complex64
    assert result.seconds > 0 and result.process_seconds >= result.seconds
    np.testing.assert_allclose(result.probe, scan.probe, rtol=1e-6, atol=1e-30)  # fixed, back in our convention
    before = metrics.evaluate(np.ones_like(scan.object), scan.object, region=region, register=False)
    after = metrics.evaluate(result.object, scan.object, region=region)
    print("before", before, "\nafter", after)
    assert after["amp_ssim"] > before["amp_ssim"] + 0.2 and after["amp_mae"] < 0.3 * before["amp_mae"]
    assert after["phase_ssim"] > before["phase_ssim"] + 0.5 and after["phase_ssim"] > 0.9
    assert after["phase_mae"] < 0.2 * before["phase_mae"] and after["phase_frc50"] > 0.6
    assert abs(after["shift_x"]) < 0.3 and abs(after["shift_y"]) < 0.3  # positions land on our grid
    assert after["amplitude_scale"] == pytest.approx(1.0, abs=0.05)  # the probe scale (ours / N) is right


def test_lsqml_refines_a_rescaled_probe(scan, region):
    """A probe of the wrong scale, rescaled to the data and refined, still gives the object up to scale."""
    wrong = scan.subset(np.arange(scan.n_patterns))
    wrong.probe = wrong.probe * 7.0
    result = run_lsqml(wrong, LsqmlSettings(epochs=8, batch_size=32, refine_probe=True, device="cpu"),
                       initial_probe=probe_on_data_scale(wrong))
    assert not np.array_equal(result.probe, probe_on_data_scale(wrong))  # it was refined
    after = metrics.evaluate(result.object, scan.object, region=region)
    assert after["phase_ssim"] > 0.8 and after["amp_ssim"] > 0.6


def test_lsqml_reports_a_failing_child_process(scan, monkeypatch):
    monkeypatch.setattr(lsqml, "WORKER", "ptychopinn_plugin.studies.no_such_worker")
    with pytest.raises(RuntimeError, match=r"(?s)pty-chi LSQML failed \(exit status 1\).*no_such_worker"):
        run_lsqml(scan, LsqmlSettings(epochs=1))
