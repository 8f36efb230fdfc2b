"""Ptychodus batch folders (`ptychodus -b reconstruct|train -i FOLDER -o OUT`, 1.7 StandardFileLayout).

A folder holds `settings.ini` (read first by batch mode), `diffraction.h5` (assembled patterns),
`product.h5` (the input product) and optionally `model.zip` (the PtychoPINN model batch
reconstruction loads). Training additionally reads `train_data.npz` / `test_data.npz`, which this
module does not write.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from importlib.resources import files
from pathlib import Path

from .diffraction_hdf5 import DiffractionData, read_diffraction, write_diffraction
from .product import ProductData
from ptycho.atomic import apply_default_permissions

from .product_hdf5 import read_product, write_product

SETTINGS_FILE = "settings.ini"
DIFFRACTION_FILE = "diffraction.h5"
PRODUCT_FILE = "product.h5"
MODEL_FILE = "model.zip"
SETTINGS_RESOURCE = "ptychodus-settings.ini"


def default_settings_text() -> str:
    """The shipped Ptychodus settings (`[Processing] Algorithm = ptychopinn_pinn` and PtychoPINN defaults)."""
    return files("ptychopinn_plugin.resources").joinpath(SETTINGS_RESOURCE).read_text(encoding="utf-8")


def write_batch_folder(folder: str | os.PathLike[str], product: ProductData, diffraction: DiffractionData, *,
                       model_path: str | os.PathLike[str] | None = None, settings_text: str | None = None) -> Path:
    """Write a Ptychodus batch folder; returns its path.

    Everything is written into a temporary folder beside `folder` first; only then are the files moved
    in (a new folder is renamed into place; in an existing folder each file is replaced atomically and
    other files are left alone). On any error nothing of this call remains.
    model_path: a PtychoPINN model archive (.zip) to copy as `model.zip`.
    settings_text: the `settings.ini` content (default: `default_settings_text()`).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: exists and is not a folder")
    parent = folder.absolute().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{folder}: parent folder '{parent}' does not exist")
    if model_path is not None and not zipfile.is_zipfile(model_path):
        raise ValueError(f"{model_path}: expected a model archive (.zip), got "
                         f"{'a non-zip file' if Path(model_path).is_file() else 'no such file'}")
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        write_product(staging / PRODUCT_FILE, product)
        write_diffraction(staging / DIFFRACTION_FILE, diffraction)
        (staging / SETTINGS_FILE).write_text(settings_text or default_settings_text(), encoding="utf-8")
        if model_path is not None:
            shutil.copyfile(model_path, staging / MODEL_FILE)
        if folder.is_dir():
            for path in staging.iterdir():
                os.replace(path, folder / path.name)
            staging.rmdir()
        else:
            apply_default_permissions(staging)
            os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_batch_folder(folder: str | os.PathLike[str]) -> tuple[ProductData, DiffractionData]:
    """Read `product.h5` and `diffraction.h5` of a batch folder (errors name the file and the key)."""
    folder = Path(folder)
    for name in (PRODUCT_FILE, DIFFRACTION_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: not a Ptychodus batch folder (no '{name}')")
    return read_product(folder / PRODUCT_FILE), read_diffraction(folder / DIFFRACTION_FILE)
