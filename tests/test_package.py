"""Package hygiene: importing the core's TF-free modules does not import TensorFlow or Keras."""

from __future__ import annotations

import subprocess
import sys

import pytest

TF_FREE = ["ptycho", "ptycho.config.config", "ptycho.scan", "ptycho.npz_io", "ptycho.grouping",
           "ptycho.stitching", "ptycho.metrics", "ptycho.atomic", "ptycho.simulate", "ptychopinn_plugin.product_hdf5",
           "ptychopinn_plugin.convert", "ptychopinn_plugin.cli"]


@pytest.mark.parametrize("module", TF_FREE)
def test_module_imports_without_tensorflow(module):
    code = (f"import sys, {module}; heavy = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} imported {out}"
