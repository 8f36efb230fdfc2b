"""Ptychodus product HDF5 files (the flat layout of `ptychodus.api.io.save_product`, 1.7), with h5py only.

Layout (root of the file, no groups):
- attributes `name`, `comments` (str); `detector_object_distance_m`, `photon_energy_eV` (float64,
  required); `probe_photon_count`, `exposure_time_s`, `mass_attenuation_m2_per_kg`,
  `tomography_angle_deg`, `focus_object_distance_m`, `tilt_angle_deg` (float64, default 0);
  `far_field` (bool, default True); optional `polarization` (str). We also write the pre-1.7 names
  `probe_energy_eV` and `mass_attenuation_m2_kg` and read either spelling.
- datasets `probe_position_indexes` (int64 (n,)), `probe_position_x_m`, `probe_position_y_m`
  (float64 (n,)), optional `probe_photon_counts` (float64 (n,)); `probe` (complex (C, I, H, W),
  attributes `pixel_width_m`, `pixel_height_m`); optional `opr_weights` (float (n, C)); `object`
  (complex (L, H, W), attributes `center_x_m`, `center_y_m`, `pixel_width_m`, `pixel_height_m`);
  `object_layer_spacing_m` (float64 (L-1,)); `loss_epochs`, `loss_values` (int64 / float64 (k,);
  float64 (0,) both when empty, exactly as Ptychodus writes them).

Also home of the HDF5 reading plumbing the plugin's file modules share: `open_hdf5` / `get_dataset` /
`read_dataset` / `float_attribute` (errors naming the file and the key).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ptycho.atomic import atomic_output

from .product import PtychodusFormatError, ProductData, ProductMetadata, format_error

LEGACY_ENERGY_KEY = "probe_energy_eV"
LEGACY_ATTENUATION_KEY = "mass_attenuation_m2_kg"
# Optional float attributes (default 0): ProductMetadata field == attribute name -> names read.
_OPTIONAL_FLOAT_ATTRS = {
    "probe_photon_count": ("probe_photon_count",),
    "exposure_time_s": ("exposure_time_s",),
    "mass_attenuation_m2_per_kg": ("mass_attenuation_m2_per_kg", LEGACY_ATTENUATION_KEY),
    "tomography_angle_deg": ("tomography_angle_deg",),
    "focus_object_distance_m": ("focus_object_distance_m",),
    "tilt_angle_deg": ("tilt_angle_deg",),
}


# ---------------------------------------------------------------------------------- shared plumbing
@contextmanager
def open_hdf5(path: str | os.PathLike[str]) -> Iterator[h5py.File]:
    """Open an HDF5 file for reading; a missing file is FileNotFoundError, a non-HDF5 or truncated
    one is PtychodusFormatError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise PtychodusFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with h5:
        yield h5


def get_dataset(h5: h5py.File, key: str, *, source: str, ndim: tuple[int, ...],
                kinds: str, expected: str, required: bool = True) -> h5py.Dataset | None:
    """The dataset `key`, checked for rank (one of `ndim`) and dtype kind (letters of numpy
    `dtype.kind`, e.g. 'c' complex, 'iu' integer) before any data is read."""
    if key not in h5:
        if required:
            raise format_error(source, key, expected, "no such dataset")
        return None
    node = h5[key]
    if not isinstance(node, h5py.Dataset):
        raise format_error(source, key, expected, f"a {type(node).__name__}, not a dataset")
    if node.ndim not in ndim:
        raise format_error(source, key, expected, f"shape {node.shape}")
    if node.size and node.dtype.kind not in kinds:
        raise format_error(source, key, expected, f"dtype {node.dtype}")
    return node


def read_dataset(dataset: h5py.Dataset, *, source: str) -> np.ndarray:
    """Read a whole dataset (one allocation, no extra copy); I/O errors name the file and key."""
    try:
        return dataset[()]
    except (OSError, RuntimeError) as exc:
        raise PtychodusFormatError(f"{source}: '{dataset.name.lstrip('/')}': cannot be read ({exc})") from exc


# ---------------------------------------------------------------------------------- attributes
def float_attribute(attrs: h5py.AttributeManager, keys: tuple[str, ...], *, source: str,
                    default: float | None) -> float:
    """The first of `keys` present in `attrs` as a float; `default` when none is (None: required)."""
    for key in keys:
        if key in attrs:
            value = attrs[key]
            try:
                return float(value)
            except (TypeError, ValueError):
                raise format_error(source, key, "a number attribute", repr(value)) from None
    if default is None:
        spelled = " (or legacy '" + "', '".join(keys[1:]) + "')" if len(keys) > 1 else ""
        raise PtychodusFormatError(f"{source}: attribute '{keys[0]}'{spelled}: required, missing")
    return default


def _str_attr(attrs: h5py.AttributeManager, key: str, default: str | None) -> str | None:
    if key not in attrs:
        return default
    value = attrs[key]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _read_metadata(h5: h5py.File, source: str) -> ProductMetadata:
    attrs = h5.attrs
    optional = {field: float_attribute(attrs, keys, source=source, default=0.0)
                for field, keys in _OPTIONAL_FLOAT_ATTRS.items()}
    return ProductMetadata(
        name=_str_attr(attrs, "name", "Unnamed"),
        comments=_str_attr(attrs, "comments", ""),
        detector_distance_m=float_attribute(attrs, ("detector_object_distance_m",), source=source, default=None),
        photon_energy_eV=float_attribute(attrs, ("photon_energy_eV", LEGACY_ENERGY_KEY), source=source, default=None),
        polarization=_str_attr(attrs, "polarization", None),
        far_field=bool(attrs.get("far_field", True)),
        **optional,
    )


# ---------------------------------------------------------------------------------- product files
def read_product(path: str | os.PathLike[str]) -> ProductData:
    """Read a product HDF5 file (Ptychodus 1.7 layout, legacy attribute names accepted).

    Raises FileNotFoundError for a missing file and PtychodusFormatError (a ValueError) naming the
    file and the key for anything missing, mis-shaped, mis-typed or unreadable.
    """
    source = str(path)
    with open_hdf5(path) as h5:
        metadata = _read_metadata(h5, source)

        def dataset(key: str, ndim: tuple[int, ...], kinds: str, expected: str,
                    required: bool = True) -> np.ndarray | None:
            node = get_dataset(h5, key, source=source, ndim=ndim, kinds=kinds, expected=expected, required=required)
            return None if node is None else read_dataset(node, source=source)

        def geometry_attr(node_key: str, attr: str, default: float | None = None) -> float:
            return float_attribute(h5[node_key].attrs, (attr,), source=f"{source}: '{node_key}'", default=default)

        real = "a real 1-D array"
        indexes = dataset("probe_position_indexes", (1,), "iu", "a 1-D integer array")
        x_m = dataset("probe_position_x_m", (1,), "iuf", real)
        y_m = dataset("probe_position_y_m", (1,), "iuf", real)
        photon_counts = dataset("probe_photon_counts", (1,), "iuf", real, required=False)
        # Check the object before reading the probe, read its (large) data last.
        object_node = get_dataset(h5, "object", source=source, ndim=(2, 3), kinds="c",
                                  expected="a complex (layers, height, width) array")
        object_pixel_width_m = geometry_attr("object", "pixel_width_m")
        object_pixel_height_m = geometry_attr("object", "pixel_height_m")
        probe = dataset("probe", (2, 3, 4), "c", "a complex (modes, incoherent modes, height, width) array")
        opr_weights = dataset("opr_weights", (2,), "f", "a float (positions, modes) array", required=False)
        layer_spacing = dataset("object_layer_spacing_m", (1,), "iuf", real, required=False)
        loss_epochs = dataset("loss_epochs", (1,), "iuf", real, required=False)
        loss_values = dataset("loss_values", (1,), "iuf", real, required=False)
        if (loss_epochs is None) != (loss_values is None):
            missing = "loss_values" if loss_values is None else "loss_epochs"
            raise format_error(source, missing, "loss_epochs and loss_values together", "only one of them")
        return ProductData(
            metadata=metadata,
            position_indexes=indexes,
            position_x_m=x_m,
            position_y_m=y_m,
            probe_photon_counts=photon_counts,
            probe=probe,
            probe_pixel_width_m=geometry_attr("probe", "pixel_width_m", object_pixel_width_m),
            probe_pixel_height_m=geometry_attr("probe", "pixel_height_m", object_pixel_height_m),
            opr_weights=opr_weights,
            object_center_x_m=geometry_attr("object", "center_x_m"),
            object_center_y_m=geometry_attr("object", "center_y_m"),
            object_pixel_width_m=object_pixel_width_m,
            object_pixel_height_m=object_pixel_height_m,
            object_layer_spacing_m=np.zeros(0) if layer_spacing is None else layer_spacing,
            loss_epochs=np.zeros(0, dtype=np.int64) if loss_epochs is None else loss_epochs,
            loss_values=np.zeros(0) if loss_values is None else loss_values,
            object=read_dataset(object_node, source=source),
            source=source,
        )


def _write_product_h5(h5: h5py.File, product: ProductData) -> None:
    md = product.metadata
    attrs = h5.attrs
    attrs["name"] = md.name
    attrs["comments"] = md.comments
    attrs["detector_object_distance_m"] = md.detector_distance_m
    attrs["photon_energy_eV"] = md.photon_energy_eV
    for field in _OPTIONAL_FLOAT_ATTRS:
        attrs[field] = getattr(md, field)
    attrs["far_field"] = md.far_field
    if md.polarization is not None:
        attrs["polarization"] = md.polarization
    attrs[LEGACY_ENERGY_KEY] = md.photon_energy_eV
    attrs[LEGACY_ATTENUATION_KEY] = md.mass_attenuation_m2_per_kg

    h5.create_dataset("probe_position_indexes", data=product.position_indexes)
    h5.create_dataset("probe_position_x_m", data=product.position_x_m)
    h5.create_dataset("probe_position_y_m", data=product.position_y_m)
    if product.probe_photon_counts is not None:
        h5.create_dataset("probe_photon_counts", data=product.probe_photon_counts)

    probe = h5.create_dataset("probe", data=product.probe)
    if product.opr_weights is not None:
        h5.create_dataset("opr_weights", data=product.opr_weights)
    probe.attrs["pixel_width_m"] = product.probe_pixel_width_m
    probe.attrs["pixel_height_m"] = product.probe_pixel_height_m

    obj = h5.create_dataset("object", data=product.object)
    obj.attrs["center_x_m"] = product.object_center_x_m
    obj.attrs["center_y_m"] = product.object_center_y_m
    obj.attrs["pixel_width_m"] = product.object_pixel_width_m
    obj.attrs["pixel_height_m"] = product.object_pixel_height_m
    h5.create_dataset("object_layer_spacing_m", data=product.object_layer_spacing_m)

    # Ptychodus writes Python lists: an empty history becomes float64 (0,) for both datasets.
    has_losses = product.loss_epochs.size > 0
    h5.create_dataset("loss_epochs", data=product.loss_epochs if has_losses else np.zeros(0))
    h5.create_dataset("loss_values", data=product.loss_values)


def write_product(path: str | os.PathLike[str], product: ProductData) -> Path:
    """Write `product` to `path` atomically (temp file in the same folder, then os.replace).

    The arrays are written as they are (no conversion copies); returns the path written.
    """
    product.validate()
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        _write_product_h5(h5, product)
    return path
