"""Conversions between our ScanData and Ptychodus products, diffraction files and batch folders.

Geometry. ScanData positions are object-pixel coordinates: indexes into the object array (pixel
(0, 0) is the first element). Metres follow Ptychodus 1.7, x_px = (x_m - center_x_m) / pixel_width_m
+ (W - 1) / 2 (likewise y). `product_to_scan` records where object pixel (0, 0) lies in metres
(`ScanMetadata.object_origin_x_m/_y_m`) together with the pixel size, so any object array on the
scan's grid goes back to metres exactly, whatever its size. A scan without that metadata gets an
object centred on (0, 0) m.

A scan without an object is given ones on `product.covering_grid` (every patch plus a margin); its
positions are shifted by whole pixels onto that grid, i.e. reading the product back gives positions
relative to the new object's pixel (0, 0).

Physical metadata a scan lacks comes from `GeometryDefaults` (10 keV, 2 m, 75 um detector pixels);
the object pixel size is then lambda * z / (N * detector pixel), and a known object pixel size with an
unknown detector pixel gives the detector pixel by the same relation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ptycho.npz_io import load_scan_npz, save_scan_npz
from ptycho.scan import ScanData, ScanMetadata, counts_to_amplitudes, first_probe_mode

from .batch_folder import read_batch_folder, write_batch_folder
from .diffraction_hdf5 import DiffractionData, read_diffraction
from .product import ObjectGeometry, ProductData, ProductMetadata, covering_grid, format_error
from .product_hdf5 import read_product, write_product
from .siemens_star import DEFAULT_MARGIN_PX, load_siemens_star

logger = logging.getLogger(__name__)

# CODATA exact constants, as in ptychodus.api.constants.
_PLANCK_J_S = 6.62607015e-34
_LIGHT_SPEED_M_S = 299792458.0
_ELECTRON_VOLT_J = 1.602176634e-19
# ProductMetadata fields without a ScanMetadata field travel in ScanMetadata.extra under these names.
_EXTRA_PRODUCT_FIELDS = ("comments", "mass_attenuation_m2_per_kg", "tomography_angle_deg",
                         "focus_object_distance_m", "tilt_angle_deg", "polarization", "far_field")
DEFAULT_PRODUCT_NAME = "ptychopinn"

OutputKind = Literal["folder", "product", "npz"]


def photon_wavelength_m(photon_energy_eV: float) -> float:
    """Photon wavelength in metres for an energy in electronvolts."""
    return _PLANCK_J_S * _LIGHT_SPEED_M_S / (photon_energy_eV * _ELECTRON_VOLT_J)


@dataclass(frozen=True)
class GeometryDefaults:
    """Values used where a scan's metadata is silent (metres, electronvolts)."""

    photon_energy_eV: float = 10_000.0
    detector_distance_m: float = 2.0
    detector_pixel_size_m: float = 75e-6


@dataclass(frozen=True)
class Geometry:
    """Resolved physical geometry of a scan with N x N patterns (metres, electronvolts)."""

    photon_energy_eV: float
    detector_distance_m: float
    detector_pixel_size_m: float
    object_pixel_size_m: float


def resolve_geometry(metadata: ScanMetadata, n_pixels: int,
                     defaults: GeometryDefaults = GeometryDefaults()) -> Geometry:
    """Fill the scan's missing geometry from `defaults`, keeping object and detector pixels consistent
    (object pixel = wavelength * distance / (N * detector pixel)) unless both are known."""
    energy = metadata.photon_energy_eV or defaults.photon_energy_eV
    distance = metadata.detector_distance_m or defaults.detector_distance_m
    scale = photon_wavelength_m(energy) * distance / n_pixels  # = object pixel * detector pixel
    object_pixel, detector_pixel = metadata.object_pixel_size_m, metadata.detector_pixel_size_m
    if detector_pixel is None:
        detector_pixel = scale / object_pixel if object_pixel else defaults.detector_pixel_size_m
    if object_pixel is None:
        object_pixel = scale / detector_pixel
    return Geometry(float(energy), float(distance), float(detector_pixel), float(object_pixel))


# ------------------------------------------------------------------------------- scan -> Ptychodus
def scan_to_product(
    scan: ScanData,
    *,
    object_array: np.ndarray | None = None,
    losses: Sequence[tuple[int, float]] = (),
    name: str | None = None,
    defaults: GeometryDefaults = GeometryDefaults(),
    position_indexes: np.ndarray | None = None,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> ProductData:
    """A Ptychodus product of `scan`.

    object_array: complex (H, W) on the scan's object-pixel grid (default: scan.object; without
        either, ones on a covering grid and positions shifted onto it, see the module docstring).
    losses: (epoch, value) pairs -> loss_epochs / loss_values.
    name: product name (default: scan.metadata.name, else 'ptychopinn').
    position_indexes: int (n,) scan indexes pairing positions with patterns (default 0 .. n-1).
    The probe (N, N) becomes a (1, 1, N, N) stack with the object's pixel size.
    """
    md = scan.metadata
    geometry = resolve_geometry(md, scan.N, defaults)
    pixel_w = geometry.object_pixel_size_m
    pixel_h = float(md.extra.get("object_pixel_height_m", pixel_w))
    obj = scan.object if object_array is None else np.asarray(object_array)
    shift = np.zeros(2)
    if obj is None:
        shift, shape = covering_grid(scan.positions, scan.N, margin_px)
        obj = np.ones(shape, dtype=np.complex64)
    if obj.ndim != 2:
        raise format_error(scan.source, "object", "a complex (height, width) object array", f"shape {obj.shape}")
    height, width = obj.shape
    if md.object_origin_x_m is not None and md.object_origin_y_m is not None:
        grid = ObjectGeometry.from_origin(width, height, pixel_w, pixel_h,
                                          md.object_origin_x_m - shift[0] * pixel_w,
                                          md.object_origin_y_m - shift[1] * pixel_h)
    else:
        grid = ObjectGeometry(width, height, pixel_w, pixel_h, center_x_m=0.0, center_y_m=0.0)
    x_m, y_m = grid.to_metres(scan.x + shift[0], scan.y + shift[1])
    extra = {key: md.extra[key] for key in _EXTRA_PRODUCT_FIELDS if key in md.extra}
    epochs, values = _loss_arrays(losses)
    return ProductData(
        metadata=ProductMetadata(
            detector_distance_m=geometry.detector_distance_m,
            photon_energy_eV=geometry.photon_energy_eV,
            name=name or md.name or DEFAULT_PRODUCT_NAME,
            probe_photon_count=md.probe_photon_count or 0.0,
            exposure_time_s=md.exposure_time_s or 0.0,
            **extra,
        ),
        position_indexes=np.arange(scan.n_patterns) if position_indexes is None else position_indexes,
        position_x_m=x_m,
        position_y_m=y_m,
        probe=scan.probe[np.newaxis, np.newaxis],
        probe_pixel_width_m=pixel_w,
        probe_pixel_height_m=pixel_h,
        object=obj,
        object_center_x_m=grid.center_x_m,
        object_center_y_m=grid.center_y_m,
        object_pixel_width_m=pixel_w,
        object_pixel_height_m=pixel_h,
        loss_epochs=epochs,
        loss_values=values,
        source=scan.source,
    )


def _loss_arrays(losses: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(losses)
    epochs = np.array([int(epoch) for epoch, _ in pairs], dtype=np.int64)
    values = np.array([float(value) for _, value in pairs], dtype=np.float64)
    return epochs, values


def _counts_from_amplitudes(amplitudes: np.ndarray) -> np.ndarray:
    """float32 counts = amplitude^2 (in float64); rounded to whole counts when every value is within
    float32 round-off of an integer, so integer counts survive counts -> amplitude -> counts exactly."""
    counts = np.square(amplitudes, dtype=np.float64)
    rounded = np.rint(counts)
    if np.all(np.abs(counts - rounded) <= 1e-6 + 3e-7 * counts):
        counts = rounded
    return counts.astype(np.float32)


def scan_to_diffraction(scan: ScanData, *, defaults: GeometryDefaults = GeometryDefaults()) -> DiffractionData:
    """Ptychodus diffraction data of `scan`: float32 counts (see `_counts_from_amplitudes`), indexes
    0 .. n-1, no bad pixels, the detector pixel size from `resolve_geometry`."""
    pixel = resolve_geometry(scan.metadata, scan.N, defaults).detector_pixel_size_m
    return DiffractionData(
        counts=_counts_from_amplitudes(scan.amplitudes),
        indexes=np.arange(scan.n_patterns, dtype=np.int64),
        bad_pixels=np.zeros((scan.N, scan.N), dtype=bool),
        detector_pixel_width_m=pixel,
        detector_pixel_height_m=float(scan.metadata.extra.get("detector_pixel_height_m", pixel)),
        source=scan.source,
    )


# ------------------------------------------------------------------------------- Ptychodus -> scan
def _pattern_order(product: ProductData, diffraction: DiffractionData) -> np.ndarray | None:
    """Row of `diffraction` for each product position (matched by index); None when already aligned."""
    wanted, have = product.position_indexes, diffraction.indexes
    if np.array_equal(wanted, have):
        return None
    unique, repeats = np.unique(have, return_counts=True)
    if np.any(repeats > 1):
        raise format_error(diffraction.source, "indexes", "unique pattern indexes",
                           f"index {int(unique[repeats > 1][0])} repeated")
    sorter = np.argsort(have)
    slot = np.clip(np.searchsorted(have, wanted, sorter=sorter), 0, len(have) - 1)
    rows = sorter[slot]
    missing = have[rows] != wanted
    if np.any(missing):
        raise format_error(product.source, "probe_position_indexes",
                           f"a diffraction pattern for every position ({diffraction.source})",
                           f"{int(missing.sum())} positions without one, e.g. index {int(wanted[missing][0])}")
    return rows


def _inpaint_bad_pixels(counts: np.ndarray, bad_pixels: np.ndarray) -> np.ndarray:
    """Fill bad pixels by biharmonic inpainting, like Ptychodus' PtychoPINN export; float64, >= 0."""
    from skimage.restoration import inpaint_biharmonic  # heavy import, only needed for bad pixels

    filled = inpaint_biharmonic(np.moveaxis(counts, 0, -1).astype(np.float64), bad_pixels, channel_axis=-1)
    return np.clip(np.moveaxis(filled, -1, 0), 0.0, None)


def product_to_scan(product: ProductData, diffraction: DiffractionData) -> ScanData:
    """ScanData of a Ptychodus product and its diffraction data.

    Patterns are paired with positions by index (ScanData rows follow the product's positions);
    bad pixels are inpainted; counts become amplitudes; the first probe mode and object layer 0 are
    kept (with a warning when more exist). Positions are object pixels of layer 0's grid; the
    metadata records the product's geometry and metadata so `scan_to_product` restores them.
    """
    rows = _pattern_order(product, diffraction)
    counts = diffraction.counts if rows is None else diffraction.counts[rows]
    if diffraction.bad_pixels.any():
        logger.info("%s: inpainting %d bad pixels", diffraction.source, int(diffraction.bad_pixels.sum()))
        counts = _inpaint_bad_pixels(counts, diffraction.bad_pixels)
    for key, probe_size, object_size in (
        ("pixel_width_m", product.probe_pixel_width_m, product.object_pixel_width_m),
        ("pixel_height_m", product.probe_pixel_height_m, product.object_pixel_height_m),
    ):
        if not np.isclose(probe_size, object_size, rtol=1e-6, atol=0.0):
            raise format_error(product.source, f"probe/{key}", f"the object's pixel size {object_size:g} m "
                               "(the probe must sample the object grid)", f"{probe_size:g} m")
    if product.object.shape[0] > 1:
        warnings.warn(f"{product.source}: 'object' has {product.object.shape[0]} layers; using layer 0", stacklevel=2)
    geometry = product.object_geometry
    md = product.metadata
    extra = {key: getattr(md, key) for key in _EXTRA_PRODUCT_FIELDS if getattr(md, key) is not None}
    if product.object_pixel_height_m != product.object_pixel_width_m:
        extra["object_pixel_height_m"] = product.object_pixel_height_m
    if diffraction.detector_pixel_height_m != diffraction.detector_pixel_width_m:
        extra["detector_pixel_height_m"] = diffraction.detector_pixel_height_m
    amplitudes = counts_to_amplitudes(counts, diffraction.source, "patterns")
    return ScanData(
        amplitudes=amplitudes,
        positions=product.positions_px(),
        probe=first_probe_mode(product.probe, product.source, "probe"),
        object=product.object[0],
        metadata=ScanMetadata(
            nphotons=float(np.mean(np.einsum("nij,nij->n", amplitudes, amplitudes, dtype=np.float64))),
            object_pixel_size_m=product.object_pixel_width_m,
            detector_pixel_size_m=diffraction.detector_pixel_width_m,
            detector_distance_m=md.detector_distance_m,
            photon_energy_eV=md.photon_energy_eV,
            name=md.name,
            probe_photon_count=md.probe_photon_count,
            exposure_time_s=md.exposure_time_s,
            object_origin_x_m=geometry.origin_x_m,
            object_origin_y_m=geometry.origin_y_m,
            extra=extra,
        ),
        source=product.source,
    )


# ------------------------------------------------------------------------------- files
def load_scan(path: str | os.PathLike[str]) -> ScanData:
    """Read any scan the project accepts.

    - a folder: a Ptychodus batch folder (`product.h5` + `diffraction.h5`);
    - `*.h5` / `*.hdf5`: a product file with `diffraction.h5` beside it;
    - `*.npz.bz2`: the Siemens-star file (`siemens_star.load_siemens_star`);
    - `*.npz`: a reference NPZ or Ptychodus' exported training data (`ptycho.npz_io.load_scan_npz`).
    """
    path = Path(path)
    if path.is_dir():
        return product_to_scan(*read_batch_folder(path))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith(".npz.bz2"):
        return load_siemens_star(path)
    if name.endswith(".npz"):
        return load_scan_npz(path)
    if name.endswith((".h5", ".hdf5")):
        diffraction_path = path.with_name("diffraction.h5")
        if path.name == diffraction_path.name:
            raise ValueError(f"{path}: this is diffraction data; give the product file (or the folder) instead")
        if not diffraction_path.is_file():
            raise FileNotFoundError(f"{path}: a product needs its patterns in '{diffraction_path}' (not found)")
        return product_to_scan(read_product(path), read_diffraction(diffraction_path))
    raise ValueError(f"{path}: unsupported input (expected a folder, .h5/.hdf5, .npz or .npz.bz2)")


def output_kind(path: str | os.PathLike[str]) -> OutputKind:
    """What `convert` writes to `path`: an existing folder or a name without suffix is a batch folder,
    `.h5`/`.hdf5` a product file, `.npz` a reference NPZ."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        return "folder"
    if path.suffix.lower() in (".h5", ".hdf5"):
        return "product"
    if path.suffix.lower() == ".npz":
        return "npz"
    raise ValueError(f"{path}: unsupported output (expected a folder, .h5/.hdf5 or .npz)")


def write_batch_folder_from_scan(folder: str | os.PathLike[str], scan: ScanData, *,
                                 defaults: GeometryDefaults = GeometryDefaults(),
                                 model_path: str | os.PathLike[str] | None = None) -> Path:
    """A Ptychodus batch folder (settings.ini, diffraction.h5, product.h5, optional model.zip) of `scan`."""
    return write_batch_folder(folder, scan_to_product(scan, defaults=defaults),
                              scan_to_diffraction(scan, defaults=defaults), model_path=model_path)


def convert(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *, name: str | None = None,
            defaults: GeometryDefaults = GeometryDefaults(),
            model_path: str | os.PathLike[str] | None = None) -> ScanData:
    """Convert any `load_scan` input to the format `output_kind(output_path)` names; returns the scan.

    model_path (batch folders only): a PtychoPINN model archive copied as `model.zip`.
    Writes are atomic: on error no output is left behind.
    """
    kind = output_kind(output_path)
    if model_path is not None and kind != "folder":
        raise ValueError(f"{output_path}: a model archive can only be added to a batch folder output")
    scan = load_scan(input_path)
    if name:
        scan.metadata.name = name
    if kind == "folder":
        write_batch_folder_from_scan(output_path, scan, defaults=defaults, model_path=model_path)
    elif kind == "product":
        write_product(output_path, scan_to_product(scan, defaults=defaults))
    else:
        save_scan_npz(scan, output_path)
    return scan


def write_reconstruction_product(
    path: str | os.PathLike[str],
    scan: ScanData,
    object_array: np.ndarray,
    *,
    losses: Sequence[tuple[int, float]] = (),
    name: str = DEFAULT_PRODUCT_NAME,
    input_product: ProductData | None = None,
) -> Path:
    """Write a reconstruction as a product HDF5 file (atomically); returns the path.

    object_array: complex (H, W) on the scan's object-pixel grid (pixel (0, 0) = position (0, 0)).
    losses: the training loss history, (epoch, value) pairs.
    input_product: the product the scan came from (`product_to_scan`); its metadata, positions
        (with their indexes), probe modes and object grid are kept and only the object and losses
        replaced. Without it everything comes from the scan (`scan_to_product`).
    """
    if input_product is None:
        product = scan_to_product(scan, object_array=object_array, losses=losses, name=name)
    else:
        obj = np.asarray(object_array)
        if obj.ndim != 2:
            raise format_error(str(path), "object", "a complex (height, width) object array", f"shape {obj.shape}")
        old = input_product.object_geometry
        for axis, origin, old_origin, pixel in (
            ("x", scan.metadata.object_origin_x_m, old.origin_x_m, old.pixel_width_m),
            ("y", scan.metadata.object_origin_y_m, old.origin_y_m, old.pixel_height_m),
        ):
            if origin is not None and abs(origin - old_origin) > 1e-6 * pixel:
                raise ValueError(f"{scan.source}: the scan's object grid (origin {axis} = {origin:g} m) is not the "
                                 f"input product's ({old_origin:g} m); pass the product the scan was read from")
        grid = ObjectGeometry.from_origin(obj.shape[1], obj.shape[0], old.pixel_width_m, old.pixel_height_m,
                                          old.origin_x_m, old.origin_y_m)
        epochs, values = _loss_arrays(losses)
        product = dataclasses.replace(
            input_product,
            metadata=dataclasses.replace(input_product.metadata, name=name),
            object=obj,
            object_center_x_m=grid.center_x_m,
            object_center_y_m=grid.center_y_m,
            object_layer_spacing_m=np.zeros(0),
            loss_epochs=epochs,
            loss_values=values,
        )
    return write_product(path, product)
