"""Saving the last trained model, for the Ptychodus 1.7 compatibility facade (TensorFlow-free)."""

from __future__ import annotations

import os
from pathlib import Path

from ptycho import params
from ptycho.bundle import BUNDLE_FILE_NAME, save_bundle


def save(out_prefix: str | os.PathLike[str]) -> Path:
    """Write the model of the last `run_cdi_example` (params.cfg['trained_model']) as the core bundle
    `out_prefix/wts.h5.zip` (the folder is created); returns the bundle's path."""
    trained = params.cfg.get("trained_model")
    if trained is None:
        raise RuntimeError("model_manager.save: no model has been trained in this process "
                           "(run ptycho.workflows.components.run_cdi_example first)")
    folder = Path(out_prefix)
    folder.mkdir(parents=True, exist_ok=True)
    return save_bundle(trained, folder / BUNDLE_FILE_NAME)
