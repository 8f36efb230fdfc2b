"""A Ptychodus data product held in plain NumPy arrays (no Ptychodus import needed).

`ProductData` mirrors `ptychodus.api.product.Product` (1.7): metadata, probe positions in metres,
a probe stack, an object stack with its geometry, and the loss history. `ObjectGeometry` maps
positions between metres and object pixels with Ptychodus 1.7's convention

    x_px = (x_m - center_x_m) / pixel_width_m + (width_px - 1) / 2     (same for y)

so object pixel (0, 0) is the first array element and integer pixel coordinates are pixel centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

POLARIZATIONS = ("left_circular", "right_circular")
_FINITE_CHECK_ELEMENTS = 1 << 22  # elements per block when scanning large arrays for NaN/inf


class PtychodusFormatError(ValueError):
    """Invalid product or diffraction data; the message names the source, the key and what was expected."""


def format_error(source: str, key: str, expected: str, got: str) -> PtychodusFormatError:
    """The project's one message shape: '<source>: '<key>': expected <expected>, got <got>'."""
    return PtychodusFormatError(f"{source}: '{key}': expected {expected}, got {got}")


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN/inf elements, scanned block by block (no full-size temporary)."""
    flat = np.ravel(array)  # a view for contiguous arrays
    return sum(
        int(np.count_nonzero(~np.isfinite(flat[start:start + _FINITE_CHECK_ELEMENTS])))
        for start in range(0, flat.size, _FINITE_CHECK_ELEMENTS)
    )


@dataclass(frozen=True)
class ObjectGeometry:
    """Pixel grid of an object array: size in pixels, pixel size and centre in metres."""

    width_px: int
    height_px: int
    pixel_width_m: float
    pixel_height_m: float
    center_x_m: float
    center_y_m: float

    @property
    def origin_x_m(self) -> float:
        """x in metres of the centre of object pixel column 0."""
        return self.center_x_m - (self.width_px - 1) / 2 * self.pixel_width_m

    @property
    def origin_y_m(self) -> float:
        """y in metres of the centre of object pixel row 0."""
        return self.center_y_m - (self.height_px - 1) / 2 * self.pixel_height_m

    @classmethod
    def from_origin(cls, width_px: int, height_px: int, pixel_width_m: float, pixel_height_m: float,
                    origin_x_m: float, origin_y_m: float) -> ObjectGeometry:
        """The grid whose pixel (0, 0) lies at (origin_x_m, origin_y_m)."""
        return cls(width_px, height_px, pixel_width_m, pixel_height_m,
                   center_x_m=origin_x_m + (width_px - 1) / 2 * pixel_width_m,
                   center_y_m=origin_y_m + (height_px - 1) / 2 * pixel_height_m)

    def to_pixels(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metres -> object-pixel coordinates (x_px, y_px), float64."""
        x_px = (np.asarray(x_m, dtype=np.float64) - self.center_x_m) / self.pixel_width_m + (self.width_px - 1) / 2
        y_px = (np.asarray(y_m, dtype=np.float64) - self.center_y_m) / self.pixel_height_m + (self.height_px - 1) / 2
        return x_px, y_px

    def to_metres(self, x_px: np.ndarray, y_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object-pixel coordinates -> metres (x_m, y_m), float64."""
        x_m = self.center_x_m + (np.asarray(x_px, dtype=np.float64) - (self.width_px - 1) / 2) * self.pixel_width_m
        y_m = self.center_y_m + (np.asarray(y_px, dtype=np.float64) - (self.height_px - 1) / 2) * self.pixel_height_m
        return x_m, y_m


def covering_grid(positions: np.ndarray, patch_size: int, margin_px: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An object grid covering every patch of a scan with `margin_px` pixels to spare.

    positions: float64 (n, 2) object-pixel coordinates (x, y); patch_size: N.
    Returns (shift, (height, width)): `positions + shift` lie on the grid at least N/2 + margin_px
    pixels from its edges. `shift` is float64 (2,) holding whole pixels, so sub-pixel parts are kept.
    """
    positions = np.asarray(positions, dtype=np.float64)
    reach = patch_size / 2 + margin_px
    low = np.floor(positions.min(axis=0) - reach)
    high = np.ceil(positions.max(axis=0) + reach)
    width, height = (high - low + 1).astype(int)
    return -low, (int(height), int(width))


@dataclass
class ProductMetadata:
    """Experiment metadata of a product (Ptychodus `ProductMetadata`); SI units as named."""

    detector_distance_m: float
    photon_energy_eV: float
    name: str = "Unnamed"
    comments: str = ""
    probe_photon_count: float = 0.0
    exposure_time_s: float = 0.0
    mass_attenuation_m2_per_kg: float = 0.0
    tomography_angle_deg: float = 0.0
    focus_object_distance_m: float = 0.0
    tilt_angle_deg: float = 0.0
    polarization: str | None = None
    far_field: bool = True

    def validate(self, source: str) -> None:
        for key in ("detector_distance_m", "photon_energy_eV", "probe_photon_count", "exposure_time_s",
                    "mass_attenuation_m2_per_kg", "tomography_angle_deg", "focus_object_distance_m",
                    "tilt_angle_deg"):
            value = getattr(self, key)
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise format_error(source, key, "a finite number", repr(value))
            setattr(self, key, float(value))
        if self.polarization is not None and self.polarization not in POLARIZATIONS:
            raise format_error(source, "polarization", f"one of {POLARIZATIONS} or absent", repr(self.polarization))
        self.far_field = bool(self.far_field)
        self.name, self.comments = str(self.name), str(self.comments)


def _empty_float() -> np.ndarray:
    return np.zeros(0, dtype=np.float64)


def _empty_int() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class ProductData:
    """A Ptychodus product.

    position_indexes: int64 (n,), scan index pairing each position with its diffraction pattern.
    position_x_m, position_y_m: float64 (n,), probe positions in metres.
    probe: complex (C coherent/OPR modes, I incoherent modes, H, W); 2-D/3-D input gets leading axes.
    probe_pixel_width_m / _height_m: probe pixel size in metres.
    object: complex (L layers, H, W); 2-D input gets a leading axis. Must be finite.
    object_center_x_m / _y_m, object_pixel_width_m / _height_m: object geometry in metres.
    object_layer_spacing_m: float64 (L - 1,).
    probe_photon_counts: optional float64 (n,) per-position photon counts (all or none).
    opr_weights: optional float (n, C) orthogonal-probe-relaxation weights.
    loss_epochs / loss_values: int64 / float64 (k,) loss history.
    Arrays are kept as given (no copies) when their dtype already fits.
    """

    metadata: ProductMetadata
    position_indexes: np.ndarray
    position_x_m: np.ndarray
    position_y_m: np.ndarray
    probe: np.ndarray
    probe_pixel_width_m: float
    probe_pixel_height_m: float
    object: np.ndarray
    object_center_x_m: float
    object_center_y_m: float
    object_pixel_width_m: float
    object_pixel_height_m: float
    object_layer_spacing_m: np.ndarray = field(default_factory=_empty_float)
    probe_photon_counts: np.ndarray | None = None
    opr_weights: np.ndarray | None = None
    loss_epochs: np.ndarray = field(default_factory=_empty_int)
    loss_values: np.ndarray = field(default_factory=_empty_float)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_positions(self) -> int:
        return int(self.position_indexes.shape[0])

    @property
    def object_geometry(self) -> ObjectGeometry:
        return ObjectGeometry(
            width_px=int(self.object.shape[-1]), height_px=int(self.object.shape[-2]),
            pixel_width_m=self.object_pixel_width_m, pixel_height_m=self.object_pixel_height_m,
            center_x_m=self.object_center_x_m, center_y_m=self.object_center_y_m,
        )

    def positions_px(self) -> np.ndarray:
        """Probe positions in object-pixel coordinates, float64 (n, 2) with [:, 0] = x, [:, 1] = y."""
        x_px, y_px = self.object_geometry.to_pixels(self.position_x_m, self.position_y_m)
        return np.stack([x_px, y_px], axis=1)

    # ------------------------------------------------------------------ validation
    def _fail(self, key: str, expected: str, got: str) -> PtychodusFormatError:
        return format_error(self.source, key, expected, got)

    def _real_vector(self, key: str, values: np.ndarray, n: int | None, dtype: type,
                     per: str = "position") -> np.ndarray:
        values = np.asarray(values)
        if values.ndim != 1 or (n is not None and values.shape[0] != n):
            want = "a 1-D array" if n is None else f"shape ({n},) (one per {per})"
            raise self._fail(key, want, f"shape {values.shape}")
        if values.dtype.kind not in "iuf" and values.size:
            raise self._fail(key, "real numbers", f"dtype {values.dtype}")
        if values.size and not np.all(np.isfinite(values)):
            raise self._fail(key, "finite values", "NaN/inf")
        return values.astype(dtype, copy=False)

    def _complex_stack(self, key: str, array: np.ndarray, ndim: int) -> np.ndarray:
        array = np.asarray(array)
        if not 2 <= array.ndim <= ndim:
            raise self._fail(key, f"a complex array with 2 to {ndim} dimensions", f"shape {array.shape}")
        if not np.iscomplexobj(array):
            raise self._fail(key, "complex values", f"dtype {array.dtype}")
        return array.reshape((1,) * (ndim - array.ndim) + array.shape)

    def _pixel_size(self, key: str) -> None:
        value = getattr(self, key)
        if not isinstance(value, (int, float, np.number)) or not (math.isfinite(value) and value > 0):
            raise self._fail(key, "a pixel size > 0 in metres", repr(value))
        setattr(self, key, float(value))

    def validate(self) -> None:
        """Raise PtychodusFormatError naming the source and key for any inconsistency."""
        self.metadata.validate(self.source)
        indexes = np.asarray(self.position_indexes)
        if indexes.ndim != 1:
            raise self._fail("probe_position_indexes", "a 1-D integer array", f"shape {indexes.shape}")
        if indexes.dtype.kind not in "iu":
            raise self._fail("probe_position_indexes", "integers", f"dtype {indexes.dtype}")
        self.position_indexes = indexes.astype(np.int64, copy=False)
        n = indexes.shape[0]
        self.position_x_m = self._real_vector("probe_position_x_m", self.position_x_m, n, np.float64)
        self.position_y_m = self._real_vector("probe_position_y_m", self.position_y_m, n, np.float64)
        if self.probe_photon_counts is not None:
            counts = self._real_vector("probe_photon_counts", self.probe_photon_counts, n, np.float64)
            if np.any(counts < 0):
                raise self._fail("probe_photon_counts", "non-negative counts", f"minimum {counts.min()}")
            self.probe_photon_counts = counts

        self.probe = self._complex_stack("probe", self.probe, 4)
        if count_nonfinite(self.probe):
            raise self._fail("probe", "finite values", "NaN/inf")
        for key in ("probe_pixel_width_m", "probe_pixel_height_m", "object_pixel_width_m", "object_pixel_height_m"):
            self._pixel_size(key)
        if self.opr_weights is not None:
            weights = np.asarray(self.opr_weights)
            n_modes = self.probe.shape[0]
            if weights.ndim != 2 or weights.shape[1] != n_modes:
                raise self._fail("opr_weights", f"shape (n, {n_modes}) (one weight per coherent probe mode)",
                                 f"shape {weights.shape}")
            if weights.dtype.kind != "f":
                raise self._fail("opr_weights", "floating-point weights", f"dtype {weights.dtype}")
            self.opr_weights = weights

        self.object = self._complex_stack("object", self.object, 3)
        bad = count_nonfinite(self.object)
        if bad:
            raise self._fail("object", "finite values", f"{bad} NaN/inf values")
        for key in ("object_center_x_m", "object_center_y_m"):
            value = getattr(self, key)
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise self._fail(key, "a finite coordinate in metres", repr(value))
            setattr(self, key, float(value))
        n_layers = self.object.shape[0]
        self.object_layer_spacing_m = self._real_vector(
            "object_layer_spacing_m", self.object_layer_spacing_m, n_layers - 1, np.float64, per="gap between layers")

        epochs = np.asarray(self.loss_epochs)
        if epochs.size and (epochs.dtype.kind not in "iu"):
            raise self._fail("loss_epochs", "integer epochs", f"dtype {epochs.dtype}")
        self.loss_epochs = self._real_vector("loss_epochs", epochs, None, np.int64)
        self.loss_values = self._real_vector(
            "loss_values", self.loss_values, self.loss_epochs.shape[0], np.float64, per="loss epoch")
