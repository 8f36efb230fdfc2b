"""Model bundles: one zip file (conventionally `wts.h5.zip` in a model directory).

Contents:
  manifest.json      format name and version, the full ModelConfig, N, gridsize, the measured
                     scales, canvas size, learned intensity scale, training summary and loss history
  probe.npy          complex64 (N, N) initial probe (NumPy format, read with allow_pickle=False)
  model.weights.h5   the Keras weights
Loading never unpickles anything and rebuilds the network from the manifest, so a loaded model gives
bit-identical predictions.

Versions: 2 adds ModelConfig.network_layout; version-1 bundles (written before it existed) were all
'stacked' networks and are read as such. 3 adds ModelConfig.merge_border_weight; older bundles merged
a group's patches with uniform weights (1.0) and are read as such. 4 adds ModelConfig.decoder_block;
older bundles' decoders were all 'upsample_conv' and are read as such.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.atomic import atomic_output
from ptycho.config.config import ConfigError, model_config_from_dict, to_dict

BUNDLE_FORMAT = "ptychopinn-bundle"
BUNDLE_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
_LEGACY_DEFAULTS = {
    1: {"network_layout": "stacked", "merge_border_weight": 1.0, "decoder_block": "upsample_conv"},
    2: {"merge_border_weight": 1.0, "decoder_block": "upsample_conv"},
    3: {"decoder_block": "upsample_conv"},
}
"""Per older format version: the ModelConfig values its bundles were written with but do not state."""
BUNDLE_FILE_NAME = "wts.h5.zip"
_MANIFEST = "manifest.json"
_PROBE = "probe.npy"
_WEIGHTS = "model.weights.h5"


class BundleError(ValueError):
    """A model bundle that cannot be read; the message names the file and what is wrong."""


def save_bundle(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write a TrainedModel to `path` (a .zip file; a directory gets `wts.h5.zip` inside). Atomic."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / BUNDLE_FILE_NAME
    spec = model.spec
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model": to_dict(spec.config),
        "N": spec.config.N,
        "gridsize": spec.config.gridsize,
        "input_scale": spec.input_scale,
        "initial_intensity_scale": spec.intensity_scale,
        "intensity_scale": model.intensity_scale,
        "canvas_size": spec.canvas_size,
        "training_summary": model.summary,
        "history": model.history,
    }
    probe_bytes = io.BytesIO()
    np.save(probe_bytes, np.asarray(spec.probe, np.complex64), allow_pickle=False)
    with tempfile.TemporaryDirectory() as scratch, atomic_output(path, suffix=".zip") as tmp:
        weights_path = Path(scratch) / _WEIGHTS
        model.keras_model.save_weights(weights_path)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_MANIFEST, json.dumps(manifest, indent=2, default=_json_default))
            archive.writestr(_PROBE, probe_bytes.getvalue())
            archive.write(weights_path, _WEIGHTS)
    return path


def resolve_bundle_path(path: str | os.PathLike[str]) -> Path:
    """A bundle file from a path that is the file itself or a directory holding `wts.h5.zip`."""
    path = Path(path)
    if path.is_dir():
        candidate = path / BUNDLE_FILE_NAME
        if not candidate.is_file():
            raise BundleError(f"{path}: no model bundle '{BUNDLE_FILE_NAME}' in this directory")
        return candidate
    if not path.exists():
        raise BundleError(f"{path}: model bundle not found")
    return path


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated manifest of a bundle (no TensorFlow needed)."""
    path = resolve_bundle_path(path)
    with _open_archive(path) as archive:
        return _manifest(archive, path)


def load_bundle(path: str | os.PathLike[str]):
    """Load a TrainedModel from a bundle file or a directory holding `wts.h5.zip`."""
    from ptycho.networks import ModelSpec, build_model
    from ptycho.training import TrainedModel

    path = resolve_bundle_path(path)
    with _open_archive(path) as archive:
        manifest = _manifest(archive, path)
        try:
            probe = np.load(io.BytesIO(archive.read(_PROBE)), allow_pickle=False)
            weights = archive.read(_WEIGHTS)
        except (KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise BundleError(f"{path}: '{_PROBE}'/'{_WEIGHTS}': missing or corrupted ({exc})") from exc
    try:
        values = manifest["model"]
        values = {**_LEGACY_DEFAULTS.get(manifest["format_version"], {}), **values}
        config = model_config_from_dict(values).validate()
    except (ConfigError, TypeError) as exc:
        raise BundleError(f"{path}: '{_MANIFEST}': invalid model configuration ({exc})") from exc
    if probe.shape != (config.N, config.N):
        raise BundleError(f"{path}: '{_PROBE}': expected shape ({config.N}, {config.N}), got {probe.shape}")
    spec = ModelSpec(config=config, input_scale=float(manifest["input_scale"]),
                     intensity_scale=float(manifest["initial_intensity_scale"]),
                     canvas_size=int(manifest["canvas_size"]), probe=probe)
    keras_model = build_model(spec)
    with tempfile.TemporaryDirectory() as scratch:
        weights_path = Path(scratch) / _WEIGHTS
        weights_path.write_bytes(weights)
        try:
            keras_model.load_weights(weights_path)
        except (ValueError, OSError, KeyError) as exc:
            raise BundleError(f"{path}: '{_WEIGHTS}': weights do not match the configuration ({exc})") from exc
    return TrainedModel(keras_model, spec, manifest.get("history", {}), manifest.get("training_summary", {}))


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{path}: not a model bundle (corrupted, truncated or not a zip file: {exc})") from exc


def _manifest(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read(_MANIFEST))
    except KeyError as exc:
        raise BundleError(f"{path}: '{_MANIFEST}': missing (not a ptychopinn model bundle)") from exc
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path}: '{_MANIFEST}': corrupted ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: '{_MANIFEST}': expected format '{BUNDLE_FORMAT}'")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{path}: '{_MANIFEST}': unsupported bundle format version {version!r} "
                          f"(this ptychopinn reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    for key in ("model", "input_scale", "initial_intensity_scale", "canvas_size"):
        if key not in manifest:
            raise BundleError(f"{path}: '{_MANIFEST}': missing key '{key}'")
    return manifest


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a bundle manifest")
