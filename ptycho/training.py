"""Training: data -> groups -> Keras fit (XLA) -> a TrainedModel.

Losses (per sample, averaged over the batch):
  PINN        nll_weight * Poisson deviance of the measured COUNTS + mae_weight * MAE of AMPLITUDES,
              plus realspace_mae_weight * MAE of object amplitude/phase when ground truth exists;
  supervised  MAE of the object amplitude and phase patches against ground truth.
Per-epoch progress and losses go to an optional callback and to the logger `ptychopinn`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import keras
import numpy as np
from keras import ops

from ptycho import backend, physics
from ptycho.batches import GroupedBatches
from ptycho.config.config import ConfigError, TrainingConfig
from ptycho.datasource import ScanSource, mean_counts_per_pattern, open_source
from ptycho.grouping import Groups, concatenate_groups, group_positions
from ptycho.networks import ModelSpec, build_model, copy_weights
from ptycho.scan import ScanData
from ptycho.symmetry import DihedralOp, required_symmetries
from ptycho.synthetic import check_synthetic_object, with_synthetic_patterns

logger = logging.getLogger("ptychopinn")


@dataclass
class EpochReport:
    """What a progress callback receives after each epoch: `losses` holds the losses as logged by Keras
    ('loss', 'val_loss', ...) and 'learning_rate', the optimizer's rate during this epoch.

    model: the model being trained, with this epoch's weights: it can reconstruct (e.g. to preview or
    score the reconstruction as training goes on); its `summary` is filled in only after training.
    """

    epoch: int  # 1-based
    total_epochs: int
    losses: dict[str, float]
    seconds: float
    model: TrainedModel


@dataclass
class TrainedModel:
    """A trained network and everything needed to use, save and describe it."""

    keras_model: keras.Model
    spec: ModelSpec
    history: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    compiled: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    """Functions compiled on first use and reused by later calls (`ptycho.inference.predictor`)."""

    @property
    def config(self):
        return self.spec.config

    @property
    def intensity_scale(self) -> float:
        """The learned scale between |F(probe * object)| and measured amplitudes."""
        if self.config.model_type != "pinn":
            return self.spec.intensity_scale
        return float(np.exp(backend.to_numpy(self.keras_model.get_layer("physics").log_scale)))

    @property
    def probe(self) -> np.ndarray:
        """complex64 (N, N): the (possibly refined) probe."""
        if self.config.model_type != "pinn":
            return self.spec.probe
        return physics.pair_to_complex(self.keras_model.get_layer("physics").probe)


@keras.saving.register_keras_serializable(package="ptycho")
class DiffractionLoss(keras.losses.Loss):
    """nll_weight * Poisson deviance (counts) + mae_weight * amplitude MAE, per sample."""

    def __init__(self, nll_weight: float = 1.0, mae_weight: float = 0.0, name: str = "diffraction_loss",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.nll_weight = float(nll_weight)
        self.mae_weight = float(mae_weight)

    def call(self, y_true, y_pred):
        axes = (1, 2, 3)
        loss = 0.0
        if self.nll_weight:
            measured = ops.square(y_true)
            predicted = ops.square(y_pred)
            deviance = predicted - measured * ops.log(predicted + 1e-8) - (measured - measured * ops.log(measured + 1e-8))
            loss = loss + self.nll_weight * ops.mean(deviance, axis=axes)
        if self.mae_weight:
            loss = loss + self.mae_weight * ops.mean(ops.abs(y_pred - y_true), axis=axes)
        return loss

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nll_weight": self.nll_weight, "mae_weight": self.mae_weight}


class ProgressCallback(keras.callbacks.Callback):
    """Forwards per-epoch losses and learning rate to `on_epoch` and the `ptychopinn` logger; appends them
    to `trained.history` (the TrainedModel wrapping the Keras model being fitted).

    The rate is read from the optimizer, not from Keras' logs, where ReduceLROnPlateau (which runs after
    this callback) writes it too late; so each epoch records the rate it trained with, and a reduction
    shows from the next epoch.
    """

    def __init__(self, trained: TrainedModel, total_epochs: int,
                 on_epoch: Callable[[EpochReport], None] | None = None) -> None:
        super().__init__()
        self.trained = trained
        self.total_epochs = total_epochs
        self.on_epoch = on_epoch
        self._start = time.perf_counter()
        self.first_step_seconds: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.first_step_seconds is None:
            self.first_step_seconds = time.perf_counter() - self._start

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        losses = {k: float(v) for k, v in (logs or {}).items() if k.endswith("loss")}
        losses["learning_rate"] = _current_learning_rate(self.model)
        for key, value in losses.items():
            self.trained.history.setdefault(key, []).append(value)
        report = EpochReport(epoch + 1, self.total_epochs, losses, time.perf_counter() - self._epoch_start,
                             self.trained)
        text = " ".join(f"{k}={v:.5g}" for k, v in losses.items() if k.endswith("loss"))
        logger.info("epoch %d/%d: %s, learning rate %.4g (%.1f s)", report.epoch, self.total_epochs, text,
                    losses["learning_rate"], report.seconds)
        if self.on_epoch is not None:
            self.on_epoch(report)


def _current_learning_rate(keras_model: keras.Model) -> float:
    """The compiled model's optimizer's learning rate now (after any reductions on plateau), to the
    float32 variable's 7 significant digits (1e-3, not 0.0010000000474974513)."""
    return float(f"{float(backend.to_numpy(keras_model.optimizer.learning_rate)):.7g}")


INITIAL_OBJECT_AMPLITUDE = 0.5
"""The object amplitude the initial intensity scale assumes: the midpoint of the amplitude head's
range, so the learned amplitudes start where the activation has gradient (not saturated at 1)."""


def model_spec_for(source: ScanSource, config: TrainingConfig, groups: Groups,
                   mean_counts: float | None = None) -> ModelSpec:
    """Measure the data-dependent parts of a model: input scale, intensity scale, canvas size.

    The intensity scale starts at sqrt(mean counts per pattern / sum |probe|^2) / 0.5: the value
    that makes an object of amplitude INITIAL_OBJECT_AMPLITUDE explain the measured counts.
    mean_counts: the source's mean counts per pattern if already known (else read from it).
    """
    if mean_counts is None:
        mean_counts = mean_counts_per_pattern(source)
    if not mean_counts > 0:
        raise ValueError(f"{source.source}: 'diff3d': all diffraction patterns are empty (no counts)")
    probe_energy = float(np.sum(np.abs(source.probe.astype(np.complex128)) ** 2))
    if not probe_energy > 0:
        raise ValueError(f"{source.source}: 'probeGuess': the probe is zero everywhere")
    n = config.model.N
    return ModelSpec(
        config=config.model,
        input_scale=math.sqrt(mean_counts / (n * n)),
        intensity_scale=math.sqrt(mean_counts / probe_energy) / INITIAL_OBJECT_AMPLITUDE,
        canvas_size=physics.canvas_size(n, groups.local_offsets, config.model.gridsize),
        probe=source.probe,
    )


def check_training_inputs(source: ScanSource, config: TrainingConfig, initial: TrainedModel | None = None) -> None:
    """Validate a training run before it starts (`train` calls it; callers may call it earlier, e.g. before
    showing progress). Sets config.model.N from the initial model or the data when it is 0; raises
    ConfigError naming the field for an invalid setting, patterns of another size than the model's,
    symmetry augmentation with a probe that has no symmetry, or (with `initial`) a model configuration
    other than the initial model's; a synthetic object file that cannot be used raises the file's error."""
    if config.model.N == 0:
        config.model.N = (initial.config if initial is not None else source).N
    if config.model.N != source.N:
        raise ConfigError(f"{source.source}: 'diff3d': the model expects {config.model.N} x {config.model.N} "
                          f"patterns, the data have {source.N} x {source.N}")
    config.validate()
    augmentation_symmetries(source, config)
    if config.synthetic_patterns:
        check_synthetic_object(config.synthetic_object)
    if initial is not None and config.model != initial.config:
        differing = [f.name for f in fields(config.model)
                     if getattr(config.model, f.name) != getattr(initial.config, f.name)]
        raise ConfigError(f"TrainingConfig.model: expected the initial model's configuration, "
                          f"got a different {', '.join(differing)}")


def train(
    data: ScanData | ScanSource | str,
    config: TrainingConfig,
    *,
    on_epoch: Callable[[EpochReport], None] | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    stream: bool = False,
    initial: TrainedModel | None = None,
) -> TrainedModel:
    """Train a PINN (no ground truth needed) or the supervised baseline on one scan.

    data: a ScanData, a ScanSource, or a path (a .h5 scan or, with stream, an uncompressed .npz is
        read batch by batch). Groups are made from positions only; a random `validation_fraction`
        of them is held out for validation (monitored for learning-rate reduction/early stopping).
    initial: continue training this model (fine-tuning, e.g. on a new scan): config.model must equal
        its configuration (N may be 0); its network weights, input scale and learned intensity scale
        are the starting point, and the physics uses the probe of `data`.
    """
    source = open_source(data, stream=stream)
    check_training_inputs(source, config, initial)
    model_type = config.model.model_type
    targets = "supervised" if model_type == "supervised" else (
        "realspace" if config.realspace_weight_total > 0 else "pinn")
    backend.set_seed(config.seed)

    groups = group_positions(source.positions, config.model.gridsize, n_neighbors=config.n_nearest_neighbors + 1,
                             groups_per_position=config.groups_per_position, seed=config.seed)
    train_groups, val_groups = _split(groups, config.validation_fraction, config.seed)
    n_measured, mean_counts = source.n_patterns, mean_counts_per_pattern(source)
    if config.synthetic_patterns:  # validation stays measured-only
        source, synthetic_groups = with_synthetic_patterns(
            source, n_patterns=config.synthetic_patterns, object_kind=config.synthetic_object,
            mean_counts=mean_counts, gridsize=config.model.gridsize, n_neighbors=config.n_nearest_neighbors + 1,
            groups_per_position=config.groups_per_position, seed=config.seed)
        train_groups = concatenate_groups(train_groups, synthetic_groups)
        groups = concatenate_groups(groups, synthetic_groups)
    spec = model_spec_for(source, config, groups, mean_counts)
    if initial is not None:  # the initial model's scales; a canvas that holds both scans' groups
        spec = replace(initial.spec, probe=spec.probe,
                                   canvas_size=max(spec.canvas_size, initial.spec.canvas_size))
    model = build_model(spec, probe_trainable=config.probe_trainable,
                        intensity_scale_trainable=config.intensity_scale_trainable)
    if initial is not None:
        copy_weights(initial.keras_model, model, skip=("physics/probe",))
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=_losses(config),
                  loss_weights=_loss_weights(config), jit_compile=True)

    batch_size = min(config.batch_size, train_groups.n_groups)
    symmetries = augmentation_symmetries(source, config)
    if symmetries:
        logger.info("symmetry augmentation: the probe is unchanged by %d of the 8 mirrors and rotations",
                    len(symmetries))
    train_batches = GroupedBatches(source, train_groups, batch_size, targets=targets, shuffle=True, seed=config.seed,
                                   symmetries=symmetries)
    val_batches = (GroupedBatches(source, val_groups, batch_size, targets=targets)
                   if val_groups is not None else None)
    monitor = "val_loss" if val_batches is not None else "loss"
    trained = TrainedModel(model, spec)
    progress = ProgressCallback(trained, config.nepochs, on_epoch)
    callbacks = [progress, keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=3, min_lr=1e-5)]
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience,
                                                       restore_best_weights=True))
    logger.info("training %s: N=%d gridsize=%d, %d training / %d validation groups, %d epochs",
                model_type, config.model.N, config.model.gridsize, train_groups.n_groups,
                0 if val_groups is None else val_groups.n_groups, config.nepochs)
    start = time.perf_counter()
    model.fit(train_batches, validation_data=val_batches, epochs=config.nepochs, verbose=0,
              callbacks=[*callbacks, *extra_callbacks])
    seconds = time.perf_counter() - start
    trained.summary = {
        "train_seconds": seconds,
        "first_step_seconds": progress.first_step_seconds,
        "epochs_run": len(trained.history.get("loss", [])),
        "n_patterns": n_measured,
        "n_synthetic_patterns": config.synthetic_patterns,
        "n_augmentation_symmetries": len(symmetries),
        "initial_model_data": None if initial is None else initial.summary.get("training_data", "unknown"),
        "n_train_groups": train_groups.n_groups,
        "n_validation_groups": 0 if val_groups is None else val_groups.n_groups,
        "training_data": str(source.source),
        "training": {k: (str(v) if not isinstance(v, (int, float, bool, type(None))) else v)
                     for k, v in vars(config).items() if k != "model"},
    }
    return trained


def augmentation_symmetries(source: ScanSource, config: TrainingConfig) -> tuple[DihedralOp, ...]:
    """The operations training groups are turned by: the probe's symmetries if config asks for symmetry
    augmentation (ConfigError if the probe has none besides the identity), else ()."""
    if not config.symmetry_augmentation:
        return ()
    return required_symmetries(source.probe, "TrainingConfig.symmetry_augmentation", f"{source.source}: 'probeGuess'")


def _split(groups: Groups, fraction: float, seed: int) -> tuple[Groups, Groups | None]:
    n_val = int(round(groups.n_groups * fraction))
    if n_val == 0 or groups.n_groups - n_val < 1:
        return groups, None
    order = np.random.default_rng(seed + 1).permutation(groups.n_groups)

    def take(ids: np.ndarray) -> Groups:
        ids = np.sort(ids)
        return Groups(groups.indices[ids], groups.global_offsets[ids], groups.local_offsets[ids])

    return take(order[n_val:]), take(order[:n_val])


def _losses(config: TrainingConfig) -> dict[str, Any]:
    losses: dict[str, Any] = {}
    if config.model.model_type == "pinn":
        losses["diffraction"] = DiffractionLoss(config.nll_weight, config.mae_weight)
    if config.model.model_type == "supervised" or config.realspace_weight_total > 0:
        losses["object_amplitude"] = keras.losses.MeanAbsoluteError()
        losses["object_phase"] = keras.losses.MeanAbsoluteError()
    return losses


def _loss_weights(config: TrainingConfig) -> dict[str, float]:
    if config.model.model_type == "supervised":
        return {"object_amplitude": 1.0, "object_phase": 1.0}
    weights = {"diffraction": 1.0}
    if config.realspace_weight_total > 0:
        weights.update(object_amplitude=config.realspace_weight_total, object_phase=config.realspace_weight_total)
    return weights
