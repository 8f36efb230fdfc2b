"""The networks: a physics-informed PINN and a supervised (PtychoNN-like) baseline.

Both take the same inputs and produce the same object outputs (NHWC, C = gridsize**2 channels):
  inputs  {"diffraction": float32 (B, N, N, C) measured AMPLITUDES,
           "offsets":     float32 (B, C, 2) local offsets (x, y) in pixels}
  outputs {"object_amplitude": (B, N, N, C), "object_phase": (B, N, N, C) radians (the heads),
           "diffraction": (B, N, N, C) predicted AMPLITUDES (PINN only),
           "object_patches": (B, C, N, N, 2) the patches the physics saw (PINN only; with object_big
           and gridsize > 1 the group's patches after merging, so overlaps agree)}
Network layouts (ModelConfig.network_layout), for gridsize > 1:
  'per_pattern' (default): one encoder-decoder with shared weights maps each pattern to its own patch
      (the group is folded into the batch); the group's patterns are coupled only through the physics
      layer's overlap consistency (object_big). On a simulated 'lines' scan (N=32, gridsize 2, 20
      epochs) this fits the data about 2.6x better (Poisson deviance) than 'stacked' and beats
      gridsize 1 (amplitude/phase SSIM 0.75/0.96 vs 0.48/0.83 stacked, 0.71/0.87 gridsize 1).
  'stacked': the group's C patterns enter one network as C channels and leave as C patch channels
      (the reference PtychoPINN layout): about C times cheaper per pattern, but worse.
Decoder blocks (ModelConfig.decoder_block): 'conv_upsample' (default; the reference PtychoPINN's
decoder) convolves each level at its input resolution and then upsamples; 'upsample_conv' upsamples
first, which costs about 4x the decoders' multiply-adds and trains 1.7x slower on a 2-core CPU for
a little more held-out amplitude per epoch (docs/quality.md).
Layers are small classes with build/call/get_config; everything is `keras.ops`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from ptycho import physics
from ptycho.config.config import ModelConfig


@dataclass
class ModelSpec:
    """What a model needs besides its configuration, measured from the training data.

    input_scale: measured amplitudes are divided by it before the network (RMS amplitude per pixel).
    intensity_scale: initial value of the learned scale between |F(probe * object)| and measured
        amplitudes, sqrt(mean counts per pattern / sum |probe|^2).
    canvas_size: side of the canvas on which a group's patches are merged (object_big, gridsize > 1).
    probe: complex64 (N, N) initial probe.
    """

    config: ModelConfig
    input_scale: float
    intensity_scale: float
    canvas_size: int
    probe: np.ndarray


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="ptycho")
class InputScale(layers.Layer):
    """Divide measured amplitudes by a fixed scale (stored with the weights)."""

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape: Any) -> None:
        self.scale_weight = self.add_weight(
            name="scale", shape=(), initializer=keras.initializers.Constant(self.scale), trainable=False)

    def call(self, x):
        return x / self.scale_weight

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="ptycho")
class FoldChannels(layers.Layer):
    """(B, N, N, C) -> (B * C, N, N, 1): each pattern of a group becomes its own batch entry."""

    def call(self, x):
        n = x.shape[1]
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, n, n, 1))

    def compute_output_shape(self, input_shape):
        # stated, not traced: JAX's symbolic batch dimension cannot prove the reshape divides evenly
        b, n, _, c = input_shape
        return (None if b is None else b * c, n, n, 1)


@keras.saving.register_keras_serializable(package="ptycho")
class UnfoldChannels(layers.Layer):
    """(B * C, N, N, 1) -> (B, N, N, C): the inverse of FoldChannels for groups of n_channels."""

    def __init__(self, n_channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_channels = n_channels

    def call(self, x):
        n = x.shape[1]
        return ops.transpose(ops.reshape(x, (-1, self.n_channels, n, n)), (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        b, n = input_shape[0], input_shape[1]
        return (None if b is None else b // self.n_channels, n, n, self.n_channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_channels": self.n_channels}


@keras.saving.register_keras_serializable(package="ptycho")
class PadObject(layers.Layer):
    """Place the central N/2 solution region into an N x N patch.

    inputs: fine (B, N/2, N/2, C) and, with probe_big, coarse (B, N, N, C) for the border.
    Without probe_big the border is `border_value` (amplitude) or 0 (phase).
    """

    def __init__(self, n: int, border_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = n
        self.border_value = float(border_value)

    def call(self, fine, coarse=None):
        quarter = self.n // 4
        padded = ops.pad(fine - self.border_value, ((0, 0), (quarter, quarter), (quarter, quarter), (0, 0)))
        padded = padded + self.border_value
        if coarse is None:
            return padded
        mask = np.zeros((1, self.n, self.n, 1), np.float32)
        mask[:, quarter:self.n - quarter, quarter:self.n - quarter] = 1.0
        mask = ops.convert_to_tensor(mask)
        return mask * padded + (1.0 - mask) * coarse

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n, "border_value": self.border_value}


@keras.saving.register_keras_serializable(package="ptycho")
class ObjectToDiffraction(layers.Layer):
    """The physics layer: object patches -> predicted diffraction amplitudes.

    For gridsize > 1 with object_big, the group's patches are merged into one canvas at their local
    offsets (a weighted mean: weight 1 in each patch's central `solution_region` x `solution_region`
    pixels, which the network predicts at full resolution, and `border_weight` outside it, so a
    neighbour's low-resolution or empty border does not blur or dim a predicted region) and each
    pattern's patch is re-extracted, so overlapping patterns must agree. Then
    optional Gaussian smoothing, illumination by the (optionally trainable, optionally masked) probe,
    far-field propagation and the learned intensity scale exp(log_scale).
    """

    def __init__(self, n: int, n_channels: int, canvas_size: int, probe: Any = None,
                 intensity_scale: float = 1.0, object_big: bool = True, probe_trainable: bool = False,
                 intensity_scale_trainable: bool = True, probe_mask: bool = False,
                 gaussian_smoothing_sigma: float = 0.0, solution_region: int | None = None,
                 border_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = n
        self.solution_region = n if solution_region is None else int(solution_region)
        self.border_weight = float(border_weight)
        # None: the plain average (bit-identical to bundles written before the weighting existed)
        self._merge_weight = (physics.solution_region_weight(n, self.solution_region, self.border_weight)
                              if self.solution_region < n and self.border_weight != 1.0 else None)
        self.n_channels = n_channels
        self.canvas_size = canvas_size
        self.initial_probe = np.ones((n, n), np.complex64) if probe is None else np.asarray(probe)
        self.intensity_scale = float(intensity_scale)
        self.object_big = object_big
        self.probe_trainable = probe_trainable
        self.intensity_scale_trainable = intensity_scale_trainable
        self.probe_mask = probe_mask
        self.gaussian_smoothing_sigma = float(gaussian_smoothing_sigma)

    def build(self, input_shape: Any) -> None:
        self.probe = self.add_weight(
            name="probe", shape=(self.n, self.n, 2),
            initializer=keras.initializers.Constant(physics.complex_to_pair(self.initial_probe)),
            trainable=self.probe_trainable)
        self.log_scale = self.add_weight(
            name="log_intensity_scale", shape=(),
            initializer=keras.initializers.Constant(np.log(self.intensity_scale)),
            trainable=self.intensity_scale_trainable)

    def _stored_variables(self) -> list:
        """The layer's variables in the order they are saved: (log intensity scale, probe), whatever is
        trainable (Keras' default order puts trainable variables first, so a bundle trained with a
        trainable probe would not load into a model built with a fixed one). It is the default-order
        layout of bundles written before this method existed, so they load unchanged."""
        return [self.log_scale, self.probe]

    def save_own_variables(self, store) -> None:
        for i, variable in enumerate(self._stored_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store) -> None:
        variables = self._stored_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(f"layer '{self.name}': expected {len(variables)} stored variables, got {len(store.keys())}")
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    def object_patches(self, amplitude, phase, offsets):
        """(B, N, N, C) amplitude/phase + (B, C, 2) offsets -> (B, C, N, N, 2) consistent patches."""
        patches = physics.polar_to_pair(ops.transpose(amplitude, (0, 3, 1, 2)), ops.transpose(phase, (0, 3, 1, 2)))
        if self.object_big and self.n_channels > 1:
            centre = float(self.canvas_size // 2)
            positions = offsets + centre
            canvas = physics.merge_patches(patches, positions, (self.canvas_size, self.canvas_size),
                                           self._merge_weight)
            patches = physics.extract_patches(canvas, positions, self.n)
        return patches

    def call(self, amplitude, phase, offsets):
        """Returns (predicted amplitudes (B, N, N, C), the consistent object patches (B, C, N, N, 2))."""
        patches = consistent = self.object_patches(amplitude, phase, offsets)
        if self.gaussian_smoothing_sigma > 0:
            flat = ops.reshape(patches, (-1, self.n, self.n, 2))
            patches = ops.reshape(physics.gaussian_smooth(flat, self.gaussian_smoothing_sigma), ops.shape(patches))
        probe = self.probe
        if self.probe_mask:
            probe = probe * ops.convert_to_tensor(physics.circular_mask(self.n)[..., None])
        predicted = physics.far_field_amplitude(physics.illuminate(patches, probe))
        return ops.transpose(predicted, (0, 2, 3, 1)) * ops.exp(self.log_scale), consistent

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n, "n_channels": self.n_channels,
                "canvas_size": self.canvas_size, "intensity_scale": self.intensity_scale,
                "object_big": self.object_big, "probe_trainable": self.probe_trainable,
                "intensity_scale_trainable": self.intensity_scale_trainable, "probe_mask": self.probe_mask,
                "gaussian_smoothing_sigma": self.gaussian_smoothing_sigma,
                "solution_region": self.solution_region, "border_weight": self.border_weight}


# --------------------------------------------------------------------------- encoder / decoder


def _conv_block(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    return layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2")(x)


def _encoder(x, base: int):
    """Three conv blocks with 2x2 max pooling: (B, N, N, C) -> (B, N/8, N/8, 4*base)."""
    for level, filters in enumerate((base, 2 * base, 4 * base)):
        x = _conv_block(x, filters, f"enc{level}")
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    return x


def _decoder(x, base: int, n_upsamplings: int, block: str, name: str):
    """n_upsamplings levels, each doubling the resolution; filters shrink from 4*base to base.

    block (ModelConfig.decoder_block): 'conv_upsample' convolves at the level's input resolution and
    then upsamples; 'upsample_conv' upsamples and then convolves at the doubled resolution.
    """
    filters = [4 * base, 2 * base, base]
    for level in range(n_upsamplings):
        f = filters[min(level, 2)]
        if block == "conv_upsample":
            x = _conv_block(x, f, f"{name}{level}")
            x = layers.UpSampling2D(2, name=f"{name}{level}_up")(x)
        else:
            x = layers.UpSampling2D(2, name=f"{name}{level}_up")(x)
            x = _conv_block(x, f, f"{name}{level}")
    return x


_ACTIVATIONS = {"sigmoid": "sigmoid", "swish": "swish", "softplus": "softplus", "relu": "relu"}


def _object_heads(bottleneck, config: ModelConfig, base: int, c: int):
    """Amplitude and phase heads, each its own decoder; returns (B, N, N, c) amplitude and phase."""
    n_up = 2 if config.pad_object else 3
    outputs = {}
    for head in ("amplitude", "phase"):
        x = _decoder(bottleneck, base, n_up, config.decoder_block, f"dec_{head}")
        activation = _ACTIVATIONS[config.amp_activation] if head == "amplitude" else "tanh"
        fine = layers.Conv2D(c, 3, padding="same", activation=activation, name=f"{head}_fine")(x)
        if head == "phase":
            fine = layers.Rescaling(np.pi, name="phase_pi")(fine)
        if config.pad_object:
            coarse = None
            if config.probe_big:
                low = layers.Conv2D(c, 3, padding="same", activation=activation, name=f"{head}_border")(
                    layers.UpSampling2D(2, name=f"{head}_border_up")(bottleneck))
                coarse = layers.UpSampling2D(4, interpolation="bilinear", name=f"{head}_border_upsample")(low)
                if head == "phase":
                    coarse = layers.Rescaling(np.pi, name="phase_border_pi")(coarse)
            fine = PadObject(config.N, name=f"{head}_pad")(fine, coarse)
        outputs[head] = fine
    return outputs["amplitude"], outputs["phase"]


def build_model(spec: ModelSpec, *, probe_trainable: bool = False,
                intensity_scale_trainable: bool = True) -> keras.Model:
    """Build the PINN or supervised model described by spec.config (no hidden global state)."""
    config = spec.config.validate()
    n, c = config.N, config.n_channels
    base = 16 * config.n_filters_scale
    diffraction = keras.Input((n, n, c), name="diffraction")
    offsets = keras.Input((c, 2), name="offsets")
    x = InputScale(spec.input_scale, name="input_scale")(diffraction)
    fold = config.network_layout == "per_pattern" and c > 1
    if fold:
        x = FoldChannels(name="fold")(x)
    bottleneck = _encoder(x, base)
    amplitude, phase = _object_heads(bottleneck, config, base, 1 if fold else c)
    if fold:
        amplitude = UnfoldChannels(c, name="unfold_amplitude")(amplitude)
        phase = UnfoldChannels(c, name="unfold_phase")(phase)
    amplitude = layers.Identity(name="object_amplitude")(amplitude)
    phase = layers.Identity(name="object_phase")(phase)
    outputs = {"object_amplitude": amplitude, "object_phase": phase}
    if config.model_type == "pinn":
        physics_layer = ObjectToDiffraction(
            n, c, spec.canvas_size, probe=spec.probe, intensity_scale=spec.intensity_scale,
            object_big=config.object_big, probe_trainable=probe_trainable,
            intensity_scale_trainable=intensity_scale_trainable, probe_mask=config.probe_mask,
            gaussian_smoothing_sigma=config.gaussian_smoothing_sigma,
            solution_region=n // 2 if config.pad_object else n, border_weight=config.merge_border_weight,
            name="physics")
        diffraction_out, patches = physics_layer(amplitude, phase, offsets)
        outputs["diffraction"] = diffraction_out
        outputs["object_patches"] = layers.Identity(name="object_patches")(patches)
    return keras.Model({"diffraction": diffraction, "offsets": offsets}, outputs,
                       name=f"ptychopinn_{config.model_type}_N{n}_g{config.gridsize}")


def single_pattern_twin(keras_model: keras.Model, spec: ModelSpec) -> keras.Model:
    """The gridsize-1 twin of a 'per_pattern' network: the same layers and weights (copied by variable
    path, so whichever of the probe and intensity scale were trainable), one pattern per input. Its
    heads give the same patch for a pattern as the group network's heads (the physics layer's group
    merge is not applied)."""
    config = replace(spec.config, gridsize=1)
    twin = build_model(replace(spec, config=config, canvas_size=config.N))
    copy_weights(keras_model, twin)
    return twin


def copy_weights(source: keras.Model, target: keras.Model, *, skip: tuple[str, ...] = ()) -> None:
    """Assign every weight of `target` the value of `source`'s weight of the same path (a model built
    from the same ModelConfig has the same paths), except the paths in `skip`."""
    values = {variable.path: variable for variable in source.weights}
    for variable in target.weights:
        if variable.path not in skip:
            variable.assign(values[variable.path])
