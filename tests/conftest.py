"""Shared test fixtures. Qt runs offscreen; TensorFlow is kept quiet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # spawned Ptychodus children share the GPU

# With the `compare` extra installed, Ptychodus' ModelCore imports pty-chi (torch, torchvision, triton)
# into the test process; importing those after TensorFlow crashes the interpreter, importing them
# first does not.
try:
    import ptychi  # noqa: F401
    import torchvision.ops  # noqa: F401
except ImportError:
    pass


def shared_data_dir() -> Path:
    """../shared/data beside the checkout, or $PTYCHOPINN_SHARED_DATA."""
    override = os.environ.get("PTYCHOPINN_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent")
    return path
