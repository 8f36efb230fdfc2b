"""Adapters from this package's plain-array Ptychodus types to Ptychodus' own API objects.

Needs Ptychodus (the `gui` extra). Used to feed scans to a running Ptychodus (`ModelCore.workflow_api`)
and to write batch inputs with Ptychodus' own writers:
  to_ptychodus_product(ProductData) -> ptychodus.api.product.Product
  to_ptychodus_diffraction(DiffractionData) -> ptychodus.api.assemble.AssembledDiffractionData
  scan_to_ptychodus(scan, ...) -> (Product, AssembledDiffractionData)
  write_ptychodus_inputs(folder, scan, ...) -> diffraction.h5 and product.h5 (ptychodus.api.io)
Geometry (metres <-> object pixels) is that of `ptychopinn_plugin.convert`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.diffraction import Polarization
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.io import StandardFileLayout, save_diffraction_data, save_product
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import LossValue, Product, ProductMetadata

from ptycho.atomic import atomic_output
from ptycho.scan import ScanData

from .convert import scan_to_diffraction, scan_to_product
from .diffraction_hdf5 import DiffractionData
from .product import ProductData


def to_ptychodus_product(product: ProductData) -> Product:
    """The Ptychodus Product holding the same metadata, positions, probe, object and losses."""
    md = product.metadata
    counts = product.probe_photon_counts
    positions = ProbePositionSequence([
        ProbePosition(int(index), float(x), float(y), None if counts is None else float(counts[i]))
        for i, (index, x, y) in enumerate(zip(product.position_indexes, product.position_x_m, product.position_y_m))
    ])
    return Product(
        metadata=ProductMetadata(
            name=md.name, comments=md.comments, detector_distance_m=md.detector_distance_m,
            photon_energy_eV=md.photon_energy_eV, probe_photon_count=md.probe_photon_count,
            exposure_time_s=md.exposure_time_s, mass_attenuation_m2_per_kg=md.mass_attenuation_m2_per_kg,
            tomography_angle_deg=md.tomography_angle_deg, focus_object_distance_m=md.focus_object_distance_m,
            tilt_angle_deg=md.tilt_angle_deg,
            polarization=None if md.polarization is None else Polarization(md.polarization),
            far_field=md.far_field,
        ),
        probe_positions=positions,
        probes=ProbeSequence(product.probe, product.opr_weights,
                             PixelGeometry(product.probe_pixel_width_m, product.probe_pixel_height_m)),
        object_=Object(product.object, PixelGeometry(product.object_pixel_width_m, product.object_pixel_height_m),
                       ObjectCenter(product.object_center_x_m, product.object_center_y_m),
                       layer_spacing_m=[float(s) for s in product.object_layer_spacing_m]),
        losses=[LossValue(int(e), float(v)) for e, v in zip(product.loss_epochs, product.loss_values)],
    )


def to_ptychodus_diffraction(data: DiffractionData) -> AssembledDiffractionData:
    """Ptychodus' assembled diffraction data with the same counts, indexes, bad pixels and pixel size."""
    return AssembledDiffractionData(
        data.indexes, data.counts, PixelGeometry(data.detector_pixel_width_m, data.detector_pixel_height_m),
        data.bad_pixels, probe_photon_counts=data.probe_photon_counts,
    )


def scan_to_ptychodus(scan: ScanData, *, object_array: np.ndarray | None = None,
                      counts_dtype: np.dtype | type | None = None) -> tuple[Product, AssembledDiffractionData]:
    """A scan as a Ptychodus product and diffraction data.

    object_array: complex (H, W) on the scan's grid for the product's object (default: scan.object,
        see `convert.scan_to_product`). counts_dtype: store the counts with this dtype (e.g. uint16, as
        a detector does; they must fit it); default float32.
    """
    diffraction = scan_to_diffraction(scan)
    if counts_dtype is not None:
        counts = np.rint(diffraction.counts.astype(np.float64))
        info = np.iinfo(counts_dtype) if np.issubdtype(counts_dtype, np.integer) else np.finfo(counts_dtype)
        if counts.max() > info.max:
            raise ValueError(f"{scan.source}: 'diff3d': counts up to {counts.max():.0f} do not fit {np.dtype(counts_dtype)}")
        diffraction.counts = counts.astype(counts_dtype)
    return to_ptychodus_product(scan_to_product(scan, object_array=object_array)), to_ptychodus_diffraction(diffraction)


def write_ptychodus_inputs(folder: str | os.PathLike[str], scan: ScanData, *,
                           object_array: np.ndarray | None = None,
                           counts_dtype: np.dtype | type | None = None) -> tuple[Path, Path]:
    """Write `diffraction.h5` and `product.h5` of `scan` into `folder` with Ptychodus' own writers
    (atomically); returns their paths. Arguments as in `scan_to_ptychodus`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    product, diffraction = scan_to_ptychodus(scan, object_array=object_array, counts_dtype=counts_dtype)
    paths = folder / StandardFileLayout.DIFFRACTION, folder / StandardFileLayout.PRODUCT
    with atomic_output(paths[0], suffix=".h5") as tmp:
        save_diffraction_data(tmp, diffraction)
    with atomic_output(paths[1], suffix=".h5") as tmp:
        save_product(tmp, product)
    return paths
