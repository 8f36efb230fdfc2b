"""Configuration dataclasses: the one source of truth for every default.

This module imports only the standard library, so Ptychodus' parent process (and anything else) can
build configurations without TensorFlow. The classes are mutable and picklable on purpose: Ptychodus
constructs `TrainingConfig(model=ModelConfig(N=0, ...))` and assigns `model.N` in the child.

Defaults agree with Ptychodus 1.7's `[PtychoPINNModel]`, `[PtychoPINNTraining]` and
`[PtychoPINNInference]` settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, MutableMapping

SUPPORTED_N = (32, 64, 128, 256)
MODEL_TYPES = ("pinn", "supervised")
AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
NETWORK_LAYOUTS = ("per_pattern", "stacked")
DECODER_BLOCKS = ("conv_upsample", "upsample_conv")
LOSSES = ("nll", "mae")
SYNTHETIC_OBJECTS = ("grf", "lines", "points")
"""Generated objects TrainingConfig.synthetic_object may name (`ptycho.simulate` kinds); else the path of
a PNG image or of a reconstruction NPZ (`ptycho.synthetic`)."""


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and the accepted values."""


@dataclass
class ModelConfig:
    """Network and physics layer.

    N: pattern/patch side in pixels (0 = not yet known; set before building a model).
    gridsize: groups hold gridsize**2 neighbouring patterns (1..3).
    n_filters_scale: multiplies the encoder/decoder filter counts (1..4).
    model_type: 'pinn' (physics-informed, no ground truth) or 'supervised' (PtychoNN-like baseline).
    amp_activation: activation of the amplitude head.
    object_big: merge a group's patches into one canvas and re-extract each pattern's patch (overlap
        consistency); only matters for gridsize > 1.
    probe_big: with pad_object, fill the border outside the central N/2 region with a learned
        low-resolution estimate instead of zeros.
    probe_mask: multiply the probe by a circular mask of radius N/2 (zero in the corners).
    pad_object: the network's high-resolution output is the central N/2 x N/2 region.
    probe_scale: accepted for Ptychodus compatibility; the intensity scale is learned from the
        measured counts, so the probe's absolute scale does not matter.
    gaussian_smoothing_sigma: sigma in pixels of a Gaussian smoothing of the illuminated object
        (0 = off).
    network_layout: for gridsize > 1, 'per_pattern' (one shared network maps each pattern to its
        patch; better) or 'stacked' (the group's patterns as channels of one network; about
        gridsize**2 times faster per pattern). See ptycho.networks.
    decoder_block: each decoder level's block: 'conv_upsample' (two 3x3 convolutions at the level's
        input resolution, then 2x nearest upsampling; the reference PtychoPINN's decoder) or
        'upsample_conv' (upsampling first, then the two convolutions at the doubled resolution: about
        4x the decoders' multiply-adds). See ptycho.networks.
    merge_border_weight: with object_big and pad_object, the weight (0..1) of a patch's border, outside
        the central N/2 region the network predicts at full resolution, when a group's patches are
        merged (1 = plain average; small values let neighbours' predictions fill the border).
    """

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    model_type: str = "pinn"
    amp_activation: str = "sigmoid"
    object_big: bool = True
    probe_big: bool = True
    probe_mask: bool = False
    pad_object: bool = True
    probe_scale: float = 4.0
    gaussian_smoothing_sigma: float = 0.0
    network_layout: str = "per_pattern"
    decoder_block: str = "conv_upsample"
    merge_border_weight: float = 0.01

    @property
    def n_channels(self) -> int:
        """Patterns per group, C = gridsize**2."""
        return self.gridsize * self.gridsize

    def validate(self) -> ModelConfig:
        """Raise ConfigError for any unsupported value; return self."""
        if self.N not in SUPPORTED_N:
            raise ConfigError(f"ModelConfig.N: expected one of {SUPPORTED_N}, got {self.N!r}")
        _check_range("ModelConfig.gridsize", self.gridsize, 1, 3)
        _check_range("ModelConfig.n_filters_scale", self.n_filters_scale, 1, 4)
        _check_choice("ModelConfig.model_type", str(self.model_type).lower(), MODEL_TYPES)
        self.model_type = str(self.model_type).lower()
        _check_choice("ModelConfig.amp_activation", self.amp_activation, AMP_ACTIVATIONS)
        _check_choice("ModelConfig.network_layout", self.network_layout, NETWORK_LAYOUTS)
        _check_choice("ModelConfig.decoder_block", self.decoder_block, DECODER_BLOCKS)
        if self.gaussian_smoothing_sigma < 0:
            raise ConfigError(f"ModelConfig.gaussian_smoothing_sigma: expected >= 0, got {self.gaussian_smoothing_sigma}")
        weight = self.merge_border_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ConfigError(f"ModelConfig.merge_border_weight: expected a number in [0, 1], "
                              f"got {self.merge_border_weight!r}")
        if self.probe_scale < 0:
            raise ConfigError(f"ModelConfig.probe_scale: expected >= 0, got {self.probe_scale}")
        return self


@dataclass
class TrainingConfig:
    """Training run.

    Loss weights: nll_weight (Poisson NLL on counts), mae_weight (MAE on amplitudes), and, when ground
    truth exists, realspace_mae_weight (MAE between predicted and true patches; the supervised model's
    loss) and realspace_weight (accepted for compatibility, added to realspace_mae_weight).
    nphotons: only used by the simulator; the intensity scale is always measured from the data.
    n_nearest_neighbors / groups_per_position: grouping (K neighbours besides the anchor, so
        K + 1 >= gridsize**2; and groups anchored at each scan position).
    synthetic_patterns / synthetic_object: add this many training patterns of a generated object
        ('grf', 'lines', 'points'), of a PNG image (a path) or of randomly turned pieces of a
        reconstruction (the path of an NPZ written by `ptychopinn infer`), simulated through the scan's
        own probe at its mean counts and scan step (`ptycho.synthetic`; PINN without real-space loss only).
    symmetry_augmentation: turn each training group by a random mirror or 90-degree rotation under which
        the probe is unchanged (`ptycho.symmetry`: exact, free augmentation; the probe must have such a
        symmetry, as simulated probes do).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train_data_file: Path | None = None
    test_data_file: Path | None = None
    batch_size: int = 16
    nepochs: int = 50
    mae_weight: float = 0.0
    nll_weight: float = 1.0
    realspace_mae_weight: float = 0.0
    realspace_weight: float = 0.0
    nphotons: float = 1e6
    positions_provided: bool = True
    probe_trainable: bool = False
    intensity_scale_trainable: bool = True
    output_dir: Path = Path("training_outputs")
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    early_stopping_patience: int | None = None
    n_nearest_neighbors: int = 7
    groups_per_position: int = 1
    synthetic_patterns: int = 0
    synthetic_object: str = "grf"
    symmetry_augmentation: bool = False
    seed: int = 0

    def validate(self) -> TrainingConfig:
        self.model.validate()
        _check_range("TrainingConfig.batch_size", self.batch_size, 1, 2**30)
        _check_range("TrainingConfig.nepochs", self.nepochs, 1, 10**6)
        for name in ("mae_weight", "nll_weight", "realspace_mae_weight", "realspace_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"TrainingConfig.{name}: expected a weight >= 0, got {value}")
        if self.model.model_type == "pinn" and self.mae_weight + self.nll_weight + self.realspace_weight_total == 0:
            raise ConfigError("TrainingConfig: all loss weights are 0; set nll_weight or mae_weight > 0")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(f"TrainingConfig.validation_fraction: expected [0, 1), got {self.validation_fraction}")
        if not self.learning_rate > 0:
            raise ConfigError(f"TrainingConfig.learning_rate: expected > 0, got {self.learning_rate}")
        _check_range("TrainingConfig.groups_per_position", self.groups_per_position, 1, 1000)
        check_neighbors(self.n_nearest_neighbors, self.model.gridsize)
        self._validate_synthetic()
        return self

    def _validate_synthetic(self) -> None:
        _check_range("TrainingConfig.synthetic_patterns", self.synthetic_patterns, 0, 10**7)
        if not self.synthetic_patterns:
            return
        if self.synthetic_patterns < self.model.n_channels:
            raise ConfigError(f"TrainingConfig.synthetic_patterns: expected 0 or at least gridsize**2 = "
                              f"{self.model.n_channels} (one group), got {self.synthetic_patterns}")
        if self.model.model_type != "pinn" or self.realspace_weight_total > 0:
            raise ConfigError("TrainingConfig.synthetic_patterns: synthetic patterns train the PINN through its "
                              "physics; the supervised model and the real-space loss need ground truth of the "
                              "measured scan (set synthetic_patterns=0)")
        if self.synthetic_object not in SYNTHETIC_OBJECTS and not Path(self.synthetic_object).is_file():
            raise ConfigError(f"TrainingConfig.synthetic_object: expected one of {SYNTHETIC_OBJECTS} or the path of "
                              f"a PNG image or a reconstruction NPZ, got {self.synthetic_object!r} (no such file)")

    @property
    def realspace_weight_total(self) -> float:
        return float(self.realspace_mae_weight) + float(self.realspace_weight)


@dataclass
class InferenceConfig:
    """Inference run. Groups cover the scan so every pattern is predicted at least `passes` times
    (Ptychodus' NumSamples maps to passes): the whole scan is always reconstructed.
    symmetry_average: also predict each group turned by every mirror and quarter turn that leaves the
    probe unchanged and average the predictions turned back (`ptycho.inference.reconstruct`).
    refine_steps: then move each predicted patch this many data-consistency steps towards its own measured
    pattern (PINN models; 0 = the network's patches as they are)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    model_path: Path = Path("wts.h5.zip")
    test_data_file: Path | None = None
    debug: bool = False
    output_dir: Path = Path("inference_outputs")
    n_nearest_neighbors: int = 7
    passes: int = 1
    batch_size: int = 64
    symmetry_average: bool = False
    refine_steps: int = 0


def check_neighbors(n_nearest_neighbors: int, gridsize: int) -> None:
    """A group of gridsize**2 needs at least gridsize**2 - 1 neighbours besides its anchor."""
    needed = gridsize * gridsize - 1
    if isinstance(n_nearest_neighbors, bool) or not isinstance(n_nearest_neighbors, int) or not (
            needed <= n_nearest_neighbors <= 62):
        raise ConfigError(f"n_nearest_neighbors: expected an integer in [{needed}, 62] for gridsize {gridsize} "
                          f"(a group has {gridsize * gridsize} members), got {n_nearest_neighbors!r}")


def _check_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {choices}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a configuration (paths as strings)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(dataclasses.asdict(config))


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """Inverse of `to_dict` for a ModelConfig; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"ModelConfig: unknown fields {sorted(unknown)}")
    return ModelConfig(**values)


def update_legacy_dict(cfg: MutableMapping[str, Any], config: Any) -> None:
    """Copy a configuration's fields into a flat legacy parameter dict (Ptychodus 1.7 calls this).

    Nested `model` fields are flattened (`cfg['N']`, `cfg['gridsize']`, ...); paths become strings.
    """
    flat = to_dict(config)
    model = flat.pop("model", None)
    if isinstance(model, dict):
        flat.update(model)
    cfg.update(flat)
