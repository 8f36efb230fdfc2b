"""One model, written once with keras.ops, on another Keras backend: a bundle trained with TensorFlow
reconstructs the same object on JAX (the backend the GPU benchmarks use), with and without the
data-consistency refinement. Needs the `jax` extra, which `.ci/run` installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ptycho.bundle import save_bundle
from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.inference import reconstruct
from ptycho.npz_io import save_scan_npz
from ptycho.simulate import SimulationConfig, simulate
from ptycho.training import train

pytest.importorskip("jax")

ON_JAX = """
import json, sys
import keras, numpy as np
from ptycho.bundle import load_bundle
from ptycho.inference import reconstruct
bundle, scan, out = sys.argv[1:]
model = load_bundle(bundle)
first = reconstruct(model, scan)
again = reconstruct(model, scan)  # the cached compiled predictor
refined = reconstruct(model, scan, refine_steps=3)
np.savez(out, plain=first.object, refined=refined.object)
print(json.dumps({"backend": keras.backend.backend(), "repeat_equal": bool(np.array_equal(first.object, again.object))}))
"""


def test_a_tensorflow_bundle_reconstructs_the_same_object_on_jax(tmp_path):
    scan = simulate(SimulationConfig(N=32, n_images=200, step=3.0, nphotons=1e6, seed=4))
    model = train(scan, TrainingConfig(model=ModelConfig(N=32, gridsize=2, n_filters_scale=1), nepochs=1,
                                       batch_size=8))
    assert model.config.network_layout == "per_pattern"
    save_bundle(model, tmp_path / "model")
    save_scan_npz(scan, tmp_path / "scan.npz")
    expected = reconstruct(model, scan).object
    expected_refined = reconstruct(model, scan, refine_steps=3).object
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", ON_JAX, str(tmp_path / "model"), str(tmp_path / "scan.npz"),
                          str(tmp_path / "jax.npz")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"backend": "jax", "repeat_equal": True}
    with np.load(tmp_path / "jax.npz") as on_jax:
        assert on_jax["plain"].shape == expected.shape and np.abs(expected).max() > 0.1
        np.testing.assert_allclose(on_jax["plain"], expected, atol=2e-4)
        assert np.abs(expected_refined - expected).max() > 1e-3
        np.testing.assert_allclose(on_jax["refined"], expected_refined, atol=1e-3)
