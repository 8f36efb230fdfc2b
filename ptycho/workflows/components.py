"""Train / load / predict entry points of the Ptychodus 1.7 compatibility facade.

Thin wrappers over the core (`ptycho.training.train`, `ptycho.inference.reconstruct`,
`ptycho.bundle`); the module imports no TensorFlow until a model is built, so an error in the input
is reported before the (slow) TensorFlow import. State shared with the other facade modules lives in
`ptycho.params.cfg` (see there).

  load_inference_bundle(dir) -> (InferenceModel, ModelConfig)   sets cfg['intensity_scale'], cfg['stitch_weight']
  InferenceModel.predict([X * intensity_scale, local_offsets]) -> complex (g, N, N, C) patches
  run_cdi_example(train, test, config) -> (amplitude, phase, TrainingResults)   sets cfg['trained_model'],
                                                                                cfg['stitch_weight']
  save_outputs(amplitude, phase, results, out_dir)   history.json, loss.png, reconstruction.npz/.png
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptycho import params
from ptycho.atomic import atomic_output
from ptycho.bundle import (
    BUNDLE_FILE_NAME,
    BundleError,
    load_bundle,
    read_manifest,
    resolve_bundle_path,
)
from ptycho.config.config import (
    ConfigError,
    ModelConfig,
    TrainingConfig,
    model_config_from_dict,
)
from ptycho.raw_data import RawData
from ptycho.stitching import illumination_weight
from ptycho.workflows import reports_errors

if TYPE_CHECKING:
    from ptycho.inference import Reconstruction
    from ptycho.training import TrainedModel

logger = logging.getLogger("ptychopinn")

HISTORY_FILE = "history.json"
LOSS_FIGURE_FILE = "loss.png"
RECONSTRUCTION_FILE = "reconstruction.npz"
RECONSTRUCTION_FIGURE_FILE = "reconstruction.png"


# ------------------------------------------------------------------------------------------ inference
class InferenceModel:
    """A trained model behind the legacy call `predict([X * intensity_scale, local_offsets])`."""

    def __init__(self, trained: TrainedModel) -> None:
        self.trained = trained
        self._predict: Any = None

    @property
    def config(self) -> ModelConfig:
        return self.trained.config

    def predict(self, inputs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Object patches of grouped diffraction, as the core's inference computes them.

        inputs: [diffraction, local_offsets]: float (g, N, N, C) measured AMPLITUDES (= the loader's
        X times params.cfg['intensity_scale']) and float (g, C, 2) local offsets (x, y) in pixels.
        Returns complex64 (g, N, N, C) object patches (for a PINN, the overlap-consistent patches its
        physics layer saw). Batches are padded to `batch_size` so one compiled shape serves all.
        """
        from ptycho import backend
        from ptycho.inference import (  # the core's own patch computation
            complex_patches,
            compiled_predictor,
        )

        diffraction, offsets = (np.asarray(a, dtype=np.float32) for a in inputs)
        n, c = self.config.N, self.config.n_channels
        if diffraction.ndim != 4 or diffraction.shape[1:] != (n, n, c):
            raise ValueError(f"predict: diffraction: expected shape (g, {n}, {n}, {c}) for this model "
                             f"(N = {n}, gridsize {self.config.gridsize}), got {diffraction.shape}")
        g = diffraction.shape[0]
        if offsets.shape != (g, c, 2):
            raise ValueError(f"predict: local offsets: expected shape ({g}, {c}, 2), got {offsets.shape}")
        if self._predict is None:
            self._predict = compiled_predictor(self.trained.keras_model, with_diffraction=False)
        patches = np.empty((g, c, n, n), np.complex64)
        for start in range(0, g, batch_size):
            # the last batch repeats its rows up to the full batch size (one compiled input shape)
            rows = np.resize(np.arange(start, min(start + batch_size, g)), min(batch_size, g))
            outputs = self._predict({"diffraction": diffraction[rows], "offsets": offsets[rows]})
            valid = min(batch_size, g - start)
            patches[start:start + valid] = complex_patches(
                {k: backend.to_numpy(v)[:valid] for k, v in outputs.items()})
        return patches.transpose(0, 2, 3, 1)


@reports_errors
def load_inference_bundle(model_dir: str | os.PathLike[str]) -> tuple[InferenceModel, ModelConfig]:
    """Load the model bundle in `model_dir`; set `params.cfg['intensity_scale']` and `['stitch_weight']`.

    model_dir: a directory holding `wts.h5.zip`, the unpacked contents of a bundle (what Ptychodus
    leaves when it unpacks a model .zip that is itself a bundle), or a bundle file.
    The bundle must fit the settings copied into params.cfg by update_legacy_dict: the same pattern
    size N and gridsize (ValueError otherwise, before TensorFlow is loaded). The network itself
    (filters, activations, ...) is rebuilt from the bundle, whatever the other settings say.
    """
    with tempfile.TemporaryDirectory(prefix="ptychopinn-") as scratch:
        path = _bundle_file(Path(model_dir), Path(scratch))
        try:
            config = model_config_from_dict(read_manifest(path)["model"])
        except (ConfigError, TypeError) as exc:
            raise BundleError(f"{model_dir}: invalid model configuration in the bundle ({exc})") from exc
        _check_settings(config, model_dir)
        trained = load_bundle(path)
    _remember(trained)
    logger.info("loaded %s model (N=%d, gridsize %d) from %s", config.model_type, config.N, config.gridsize,
                model_dir)
    return InferenceModel(trained), trained.config


def _remember(trained: TrainedModel) -> None:
    """Record what the facade's later calls need of a model: its intensity scale (the loader's
    normalisation) and its probe's stitching weights (`tf_helper.reassemble_position`)."""
    params.cfg["intensity_scale"] = trained.intensity_scale
    params.cfg["stitch_weight"] = illumination_weight(trained.probe)


def _bundle_file(path: Path, scratch: Path) -> Path:
    """The bundle file for `path`; the unpacked contents of a bundle are zipped again into `scratch`."""
    if not (path.is_dir() and not (path / BUNDLE_FILE_NAME).exists() and any(path.iterdir())):
        return resolve_bundle_path(path)
    archive = scratch / BUNDLE_FILE_NAME
    with zipfile.ZipFile(archive, "w") as rezipped:
        for member in sorted(path.iterdir()):
            if member.is_file():
                rezipped.write(member, member.name)
    try:
        read_manifest(archive)
    except BundleError as exc:
        raise BundleError(f"{path}: holds neither '{BUNDLE_FILE_NAME}' nor the unpacked contents of a "
                          f"ptychopinn model bundle") from exc
    return archive


def _check_settings(config: ModelConfig, source: str | os.PathLike[str]) -> None:
    """The bundle's N and gridsize must equal those in params.cfg (the data's N, the GridSize setting)."""
    n, gridsize = params.cfg.get("N"), params.cfg.get("gridsize")
    if n and n != config.N:
        raise ValueError(f"{source}: the model was trained on {config.N} x {config.N} diffraction patterns, "
                         f"but the data have {n} x {n} patterns; load a model trained on {n} x {n} patterns")
    if gridsize and gridsize != config.gridsize:
        raise ValueError(f"{source}: the model was trained with gridsize {config.gridsize}, but the GridSize "
                         f"setting is {gridsize}; set GridSize to {config.gridsize} to use this model")


# ------------------------------------------------------------------------------------------- training
@dataclass
class TrainingResults:
    """What `run_cdi_example` produced: the trained model and the test data's reconstruction (or None)."""

    model: TrainedModel
    reconstruction: Reconstruction | None

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch losses by Keras name ('loss', 'val_loss', ...)."""
        return self.model.history


@reports_errors
def run_cdi_example(train_data: RawData, test_data: RawData | None, config: TrainingConfig
                    ) -> tuple[np.ndarray | None, np.ndarray | None, TrainingResults]:
    """Train on `train_data` with the core, then reconstruct `test_data` (if given) with the new model.

    The trained model is kept in `params.cfg['trained_model']` (for `model_manager.save`), its
    intensity scale in `params.cfg['intensity_scale']` and its stitching weights in
    `params.cfg['stitch_weight']`. Ptychodus has no setting for the number of
    neighbours used in training: a config with too few for its gridsize (the default K = 7 with
    gridsize 3) uses gridsize**2 - 1. Per-epoch losses are logged on the `ptychopinn` logger.
    Returns (amplitude, phase) float (H, W) of the test reconstruction on the test object's grid
    (None, None without test data) and the TrainingResults.
    """
    from ptycho.inference import reconstruct
    from ptycho.training import train

    needed = config.model.gridsize ** 2 - 1
    if config.n_nearest_neighbors < needed:
        logger.info("gridsize %d: drawing groups from %d neighbours (instead of %d)", config.model.gridsize,
                    needed, config.n_nearest_neighbors)
        config = dataclasses.replace(config, n_nearest_neighbors=needed)
    trained = train(train_data.scan, config)
    params.cfg["trained_model"] = trained
    _remember(trained)
    if test_data is None:
        return None, None, TrainingResults(trained, None)
    reconstruction = reconstruct(trained, test_data.scan, n_nearest_neighbors=config.n_nearest_neighbors)
    image = reconstruction.object
    return np.abs(image), np.angle(image), TrainingResults(trained, reconstruction)


def save_outputs(amplitude: np.ndarray | None, phase: np.ndarray | None, results: TrainingResults,
                 out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the loss history (history.json, loss.png) and, when given, the test reconstruction
    (reconstruction.npz with float32 `amplitude` and `phase` (H, W), reconstruction.png) into out_dir;
    every file atomically. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = results.history
    with atomic_output(out / HISTORY_FILE) as tmp:
        tmp.write_text(json.dumps({"history": history, "summary": results.model.summary}, indent=2, default=str))
    written = [out / HISTORY_FILE, _save_figure(out / LOSS_FIGURE_FILE, _plot_losses, history)]
    if amplitude is not None and phase is not None:
        with atomic_output(out / RECONSTRUCTION_FILE, suffix=".npz") as tmp:
            np.savez(tmp, amplitude=np.asarray(amplitude, np.float32), phase=np.asarray(phase, np.float32))
        written += [out / RECONSTRUCTION_FILE,
                    _save_figure(out / RECONSTRUCTION_FIGURE_FILE, _plot_object, amplitude, phase)]
    return written


def _save_figure(path: Path, draw: Any, *args: Any) -> Path:
    """Draw with `draw(figure, *args)` on a new Agg figure and save it atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure, *args)
    with atomic_output(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path


def _plot_losses(figure: Any, history: dict[str, list[float]]) -> None:
    axes = figure.subplots()
    for name, values in history.items():
        if name.endswith("loss") and values:
            axes.plot(np.arange(1, len(values) + 1), values, ".-", label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.legend()


def _plot_object(figure: Any, amplitude: np.ndarray, phase: np.ndarray) -> None:
    for axes, image, title in zip(figure.subplots(1, 2), (amplitude, phase), ("amplitude", "phase (rad)")):
        shown = axes.imshow(image, cmap="gray")
        axes.set_title(title)
        axes.set_axis_off()
        figure.colorbar(shown, ax=axes, shrink=0.8)
